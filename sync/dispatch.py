"""Handing runs to the workers. A run the queue never got is still in the database, and the next tick sends it."""

from __future__ import annotations

import logging
import uuid

from celery import Celery
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import utcnow
from sync.models import SyncRun

log = logging.getLogger(__name__)

RUN_TASK = "synchub.sync.run"


def hand_over(
    sessions: sessionmaker[Session], celery: Celery, run_id: uuid.UUID, countdown: float | None = None
) -> bool:
    """Send a run's task; on success note when, so the tick does not send it again. False if Redis refused."""
    try:
        celery.send_task(RUN_TASK, args=[str(run_id)], queue="sync", countdown=countdown)
    except Exception:
        log.exception("could not enqueue a sync run; the next tick will", extra={"run_id": str(run_id)})
        return False
    with transaction(sessions) as session:
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(enqueued_at=utcnow()))
    return True
