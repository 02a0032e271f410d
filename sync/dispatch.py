"""Handing queued rows (runs today) to the workers. A row the queue never got is still in the database, and the next
tick sends it."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from datetime import datetime

from celery import Celery
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import Base, transaction
from core.models import utcnow
from sync.models import RunStatus, SyncRun, queued_again

log = logging.getLogger(__name__)

RUN_TASK = "synchub.sync.run"
BATCH_TASK = "synchub.sync.runs"
BATCH_SIZE = 100
"""Most runs one Celery message carries."""
SPREAD = 16
"""A tick sends at least this many messages (while it has runs for them), so that a few due runs still reach
every worker process instead of queueing behind one."""
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
    kwargs: dict[str, object] | None = None,
) -> bool:
    """The one way a queued row (a model with `id` and `enqueued_at`) reaches the workers: send its task
    (`task(row id)`), then note when, so the tick does not send it again (`claimed`: the caller noted it before
    sending). If the broker refuses, `refused` marks the row for the next tick, and the answer is False."""
    try:
        celery.send_task(
            task,
            args=[str(row_id)],
            kwargs=kwargs,
            queue=queue,
            countdown=countdown,
            ignore_result=True,
            retry_policy=SEND_RETRY,
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
    prepaid: bool = False,
) -> bool:
    """Send a run's task; False if Redis refused (the run is then left to the next tick). `prepaid`: the run holds a
    reserved token of the shared rate limit for when its countdown ends."""
    kwargs: dict[str, object] | None = {"prepaid": True} if prepaid else None
    return send_queued(
        sessions, celery, SyncRun, run_id, RUN_TASK, "sync", countdown, leave_to_tick, claimed=claimed, kwargs=kwargs
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


def batches(run_ids: list[uuid.UUID]) -> list[list[uuid.UUID]]:
    """The runs cut into messages of at most BATCH_SIZE runs, and at least SPREAD messages while there are runs."""
    size = max(1, min(BATCH_SIZE, math.ceil(len(run_ids) / SPREAD)))
    return [run_ids[start : start + size] for start in range(0, len(run_ids), size)]


def hand_over_batches(
    sessions: sessionmaker[Session], celery: Celery, run_ids: list[uuid.UUID], stamp: datetime
) -> int:
    """Send runs claimed as sent at `stamp` (their `enqueued_at`) in batches, each message naming its runs and the
    stamp: a worker runs a batch's runs one after another, only those still queued or running under that stamp. A
    batch the broker refused is marked unsent for the next tick. Returns how many runs were sent."""
    sent = 0
    for batch in batches(run_ids):
        try:
            celery.send_task(
                BATCH_TASK,
                args=[[str(run_id) for run_id in batch], stamp.isoformat()],
                queue="sync",
                ignore_result=True,
                retry_policy=SEND_RETRY,
            )
        except Exception:
            log.exception("could not enqueue a batch; the next tick will", extra={"runs": len(batch)})
            leave_batch_to_tick(sessions, batch, stamp)
            continue
        sent += len(batch)
    return sent


def leave_batch_to_tick(sessions: sessionmaker[Session], run_ids: list[uuid.UUID], stamp: datetime) -> None:
    """The queue did not take a batch: its runs still under its stamp become queued and unsent."""
    with transaction(sessions) as session:
        session.execute(
            queued_again(
                SyncRun.id.in_(run_ids),
                SyncRun.enqueued_at == stamp,
                SyncRun.status.in_((RunStatus.QUEUED.value, RunStatus.RUNNING.value)),
                enqueued_at=None,
            )
        )


def still_in_batch(sessions: sessionmaker[Session], run_ids: list[uuid.UUID], stamp: datetime) -> list[uuid.UUID]:
    """The runs a batch message still stands for, in its order: queued or running, and not sent again since (a
    slice handed to its own message, a wait, the watchdog and the tick all change `enqueued_at`). A redelivered
    batch so skips the runs that finished or moved on, and runs again the one its killed worker was on."""
    with sessions() as session:
        mine = set(
            session.scalars(
                select(SyncRun.id).where(
                    SyncRun.id.in_(run_ids),
                    SyncRun.enqueued_at == stamp,
                    SyncRun.status.in_((RunStatus.QUEUED.value, RunStatus.RUNNING.value)),
                )
            )
        )
    return [run_id for run_id in run_ids if run_id in mine]


def claim_again(
    sessions: sessionmaker[Session], run_ids: list[uuid.UUID], stamp: datetime
) -> tuple[list[uuid.UUID], datetime]:
    """Runs of a batch its worker had no time left for, claimed under a new stamp for a batch of their own."""
    now = utcnow()
    with transaction(sessions) as session:
        claimed = session.scalars(
            update(SyncRun)
            .where(SyncRun.id.in_(run_ids), SyncRun.enqueued_at == stamp, SyncRun.status == RunStatus.QUEUED.value)
            .values(enqueued_at=now)
            .returning(SyncRun.id)
        ).all()
    mine = set(claimed)
    return [run_id for run_id in run_ids if run_id in mine], now
