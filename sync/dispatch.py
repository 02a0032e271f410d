"""Handing queued rows (runs today) to the workers. A row the queue never got is still in the database, and the next
tick sends it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from celery import Celery
from sqlalchemy import or_, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import Base, transaction
from core.models import utcnow
from sync.models import RunStatus, SyncRun

log = logging.getLogger(__name__)

RUN_TASK = "synchub.sync.run"
# Give up on an unreachable broker within about a second: the run is in the database and the next tick sends it,
# so a settings page or a webhook never hangs on Redis.
SEND_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def send_queued(
    sessions: sessionmaker[Session],
    celery: Celery,
    model: type[Base],
    row_id: uuid.UUID,
    task: str,
    queue: str,
    countdown: float | None = None,
    refused: Callable[[sessionmaker[Session], uuid.UUID], None] | None = None,
    claimed: bool = False,
) -> bool:
    """The one way a queued row (a model with `id` and `enqueued_at`) reaches the workers: send its task
    (`task(row id)`), then note when, so the tick does not send it again (`claimed`: the caller noted it before
    sending). If the broker refuses, `refused` marks the row for the next tick, and the answer is False."""
    try:
        celery.send_task(
            task, args=[str(row_id)], queue=queue, countdown=countdown, ignore_result=True, retry_policy=SEND_RETRY
        )
    except Exception:
        log.exception("could not enqueue; the next tick will", extra={"row_id": str(row_id), "task": task})
        if refused is not None:
            refused(sessions, row_id)
        return False
    if claimed:
        return True
    with transaction(sessions) as session:
        session.execute(update(model).where(model.__table__.c.id == row_id).values(enqueued_at=utcnow()))
    return True


def hand_over(
    sessions: sessionmaker[Session],
    celery: Celery,
    run_id: uuid.UUID,
    countdown: float | None = None,
    claimed: bool = False,
) -> bool:
    """Send a run's task; False if Redis refused (the run is then left to the next tick)."""
    return send_queued(
        sessions, celery, SyncRun, run_id, RUN_TASK, "sync", countdown, refused=leave_to_tick, claimed=claimed
    )


def hand_over_unsent(sessions: sessionmaker[Session], celery: Celery, run_id: uuid.UUID) -> bool:
    """Send a run only when no message for it is out: one just queued, one the queue refused before, or one a
    request brought forward. A run already sent, running or waiting has its message or its worker, and another
    message would only be skipped by the worker. Claimed in one statement, so two requests never both send it.
    False when nothing was sent."""
    now = utcnow()
    with transaction(sessions) as session:
        claimed = session.execute(
            update(SyncRun)
            .where(
                SyncRun.id == run_id,
                SyncRun.status == RunStatus.QUEUED.value,
                SyncRun.enqueued_at.is_(None),
                or_(SyncRun.not_before.is_(None), SyncRun.not_before <= now),
            )
            .values(enqueued_at=now)
        )
    # Claimed with its `enqueued_at` already: no second write of the row, which the worker starting the run would
    # wait on (it locks the row).
    return bool(getattr(claimed, "rowcount", 0)) and hand_over(sessions, celery, run_id, claimed=True)


def leave_to_tick(sessions: sessionmaker[Session], run_id: uuid.UUID) -> None:
    """The queue did not take the run: mark it unsent (a running one, whose next slice was lost, as queued) so
    the next tick sends it instead of the watchdog an hour later."""
    with transaction(sessions) as session:
        run = session.get(SyncRun, run_id, with_for_update=True)
        if run is not None and run.status in (RunStatus.QUEUED.value, RunStatus.RUNNING.value):
            run.move_to(RunStatus.QUEUED)
            run.enqueued_at = None
