"""Handing runs to the workers. A run the queue never got is still in the database, and the next tick sends it."""

from __future__ import annotations

import logging
import uuid

from celery import Celery
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import utcnow
from sync.models import RunStatus, SyncRun

log = logging.getLogger(__name__)

RUN_TASK = "synchub.sync.run"
# Give up on an unreachable broker within about a second: the run is in the database and the next tick sends it,
# so a settings page or a webhook never hangs on Redis.
SEND_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def hand_over(
    sessions: sessionmaker[Session], celery: Celery, run_id: uuid.UUID, countdown: float | None = None
) -> bool:
    """Send a run's task; on success note when, so the tick does not send it again. False if Redis refused."""
    try:
        celery.send_task(
            RUN_TASK,
            args=[str(run_id)],
            queue="sync",
            countdown=countdown,
            ignore_result=True,
            retry_policy=SEND_RETRY,
        )
    except Exception:
        log.exception("could not enqueue a sync run; the next tick will", extra={"run_id": str(run_id)})
        leave_to_tick(sessions, run_id)
        return False
    with transaction(sessions) as session:
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(enqueued_at=utcnow()))
    return True


def leave_to_tick(sessions: sessionmaker[Session], run_id: uuid.UUID) -> None:
    """The queue did not take the run: mark it unsent (a running one, whose next slice was lost, as queued) so
    the next tick sends it instead of the watchdog an hour later."""
    with transaction(sessions) as session:
        run = session.get(SyncRun, run_id, with_for_update=True)
        if run is not None and run.status in (RunStatus.QUEUED.value, RunStatus.RUNNING.value):
            run.move_to(RunStatus.QUEUED)
            run.enqueued_at = None
