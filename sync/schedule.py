"""What is due comes from the database, never from the queue.

Each stream, a (connection, capability, resource), has a `schedules` row with `next_run_at`. Beat's tick requests
the due ones, hands to the workers runs that were never enqueued (Redis was down) or whose `waiting` time has come,
and re-queues runs whose heartbeat stopped (the watchdog). Failures push `next_run_at` out on a doubling delay,
never past the poll interval, so the schedule keeps going and the next success clears the error.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import Capability, ConnectorSpec
from connectors.registry import capabilities_of, settings_of
from core.db import transaction
from core.models import Connection, ConnectionStatus, utcnow
from core.settings import MAX_POLL_SECONDS, MIN_POLL_SECONDS, Settings
from sync import channels
from sync.models import NO_RESOURCE, ConnectionResource, RunStatus, Schedule, SyncRun

log = logging.getLogger(__name__)

Send = Callable[[uuid.UUID], bool]


PUSHED_POLL_FACTOR = 4
"""A stream with a live push channel is still polled, this many times less often."""


def interval_seconds(settings: Settings, spec: ConnectorSpec, capability: Capability, schedule: Schedule | None) -> int:
    """Per connection, else per deployment, else the connector's own interval, always within 5 min..24 h."""
    if schedule is not None and schedule.interval_seconds:
        chosen = schedule.interval_seconds
    else:
        deployment = settings_of(settings, spec).poll_interval_seconds
        chosen = int(deployment or capability.poll_interval.total_seconds())
    return max(MIN_POLL_SECONDS, min(MAX_POLL_SECONDS, chosen))


def jittered(settings: Settings, seconds: float) -> timedelta:
    return timedelta(seconds=seconds * (1 + random.uniform(0, settings.schedule.jitter)))


def ensure(
    session: Session, settings: Settings, connection: Connection, name: str, resource: str = NO_RESOURCE
) -> Schedule | None:
    """The schedule row of a stream, created due one interval from now; a resource's new row takes the interval
    its owner chose for the capability's other resources."""
    found = capabilities_of(settings, connection.auth_provider).get(name)
    if found is None:
        return None
    key = (connection.id, name, resource)
    schedule = session.get(Schedule, key)
    if schedule is None:
        chosen = chosen_interval(session, connection.id, name) if resource else None
        schedule = Schedule(connection_id=connection.id, capability=name, resource=resource, interval_seconds=chosen)
        seconds = interval_seconds(settings, found[0], found[1], schedule)
        schedule.next_run_at = utcnow() + jittered(settings, seconds)
        try:
            with session.begin_nested():
                session.add(schedule)
        except IntegrityError:  # created meanwhile by a concurrent request
            schedule = session.get_one(Schedule, key)
    return schedule


def chosen_interval(session: Session, connection_id: uuid.UUID, capability: str) -> int | None:
    return session.scalar(
        select(Schedule.interval_seconds)
        .where(
            Schedule.connection_id == connection_id,
            Schedule.capability == capability,
            Schedule.interval_seconds.is_not(None),
        )
        .limit(1)
    )


def succeeded(session: Session, connection_id: uuid.UUID, capability: str, resource: str = NO_RESOURCE) -> None:
    schedule = session.get(Schedule, (connection_id, capability, resource))
    if schedule is not None:
        schedule.failures, schedule.last_error, schedule.last_success_at = 0, None, utcnow()


def failed(
    session: Session,
    settings: Settings,
    connection: Connection,
    capability: str,
    error: str,
    resource: str = NO_RESOURCE,
) -> None:
    """Count the failure; the next poll comes after a doubling back-off, never later than the interval."""
    schedule = ensure(session, settings, connection, capability, resource)
    found = capabilities_of(settings, connection.auth_provider).get(capability)
    if schedule is None or found is None:
        return
    schedule.failures += 1
    schedule.last_error = error
    interval = interval_seconds(settings, found[0], found[1], schedule)
    backoff = min(interval, settings.schedule.failure_backoff_seconds * 2 ** (schedule.failures - 1))
    schedule.next_run_at = utcnow() + jittered(settings, backoff)


@dataclass
class TickReport:
    scheduled: int = 0
    handed_over: int = 0
    requeued: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"scheduled": self.scheduled, "handed_over": self.handed_over, "requeued": self.requeued}


def watchdog(session: Session, settings: Settings, alive: Callable[[uuid.UUID], bool]) -> list[uuid.UUID]:
    """Runs left `running` by a worker that stopped reporting go back to `queued`, resuming from their checkpoint.

    A run counts as dead when its heartbeat is older than the timeout and nobody holds its lock (`alive`).
    """
    stale = utcnow() - timedelta(seconds=settings.schedule.heartbeat_timeout_seconds)
    runs = session.scalars(
        select(SyncRun)
        .where(SyncRun.status == RunStatus.RUNNING.value, SyncRun.heartbeat_at < stale)
        .with_for_update(skip_locked=True)
    ).all()
    dead = [run for run in runs if not alive(run.id)]
    for run in dead:
        run.retries += 1
        if run.retries >= settings.schedule.max_attempts:
            # A run that kills its worker every time (memory, hard time limit) must not hold the slot forever.
            error = f"gave up after {run.retries} attempts: its worker stopped reporting each time"
            run.move_to(RunStatus.FAILED, error)
            connection = session.get_one(Connection, run.connection_id)
            failed(session, settings, connection, run.capability, error, run.resource)
            continue
        run.move_to(RunStatus.QUEUED, "re-queued: the worker working on it stopped reporting")
        run.enqueued_at = None
        log.warning("watchdog re-queued a run", extra={"run_id": str(run.id)})
    return [run.id for run in dead if run.status == RunStatus.QUEUED.value]


def due_schedules(session: Session, settings: Settings) -> list[tuple[uuid.UUID, str, str]]:
    """Ask for the runs that are due, and move each schedule on by its interval with jitter."""
    now = utcnow()
    rows = session.execute(
        select(Schedule, Connection)
        .join(Connection, Connection.id == Schedule.connection_id)
        .where(Schedule.next_run_at <= now, Connection.status == ConnectionStatus.ACTIVE.value)
        .with_for_update(of=Schedule, skip_locked=True)
    ).all()
    due = []
    for schedule, connection in rows:
        found = capabilities_of(settings, connection.auth_provider).get(schedule.capability)
        if found is None:
            continue
        seconds = interval_seconds(settings, found[0], found[1], schedule)
        if channels.live_channel(session, connection.id, schedule.capability, schedule.resource):
            seconds = min(MAX_POLL_SECONDS, seconds * PUSHED_POLL_FACTOR)  # a backstop: pushes bring the changes
        schedule.next_run_at = now + jittered(settings, seconds)
        due.append((connection.id, schedule.capability, schedule.resource))
    return due


def missing_schedules(session: Session, settings: Settings) -> None:
    """Streams without a schedule get theirs, due now: connections made before schedules existed, capabilities
    that grew, resources the provider lists again."""
    connections = session.scalars(select(Connection).where(Connection.status == ConnectionStatus.ACTIVE.value)).all()
    have = {
        tuple(row) for row in session.execute(select(Schedule.connection_id, Schedule.capability, Schedule.resource))
    }
    chosen: dict[tuple[uuid.UUID, str], list[str]] = {}
    for connection_id, capability, resource_id in session.execute(
        select(ConnectionResource.connection_id, ConnectionResource.capability, ConnectionResource.id)
        .join(Connection, Connection.id == ConnectionResource.connection_id)
        .where(
            Connection.status == ConnectionStatus.ACTIVE.value,
            ConnectionResource.selected,
            ConnectionResource.gone_at.is_(None),
        )
    ):
        chosen.setdefault((connection_id, capability), []).append(str(resource_id))
    for connection in connections:
        offered = capabilities_of(settings, connection.auth_provider)
        for name in connection.capabilities:
            if name not in offered:
                continue
            streams = [NO_RESOURCE] if offered[name][1].resources is None else chosen.get((connection.id, name), [])
            for resource in streams:
                if (connection.id, name, resource) not in have and (
                    row := ensure(session, settings, connection, name, resource)
                ):
                    row.next_run_at = utcnow()


def unsent_runs(session: Session, settings: Settings) -> list[uuid.UUID]:
    """Queued runs never handed to a worker (or handed over so long ago the message is surely lost), and
    waiting runs whose time has come."""
    now = utcnow()
    lost = now - timedelta(seconds=settings.schedule.heartbeat_timeout_seconds)
    runs = session.scalars(
        select(SyncRun)
        .join(Connection, Connection.id == SyncRun.connection_id)
        .where(
            Connection.status == ConnectionStatus.ACTIVE.value,
            or_(
                (SyncRun.status == RunStatus.QUEUED.value)
                & or_(SyncRun.enqueued_at.is_(None), SyncRun.enqueued_at < lost)
                & or_(SyncRun.not_before.is_(None), SyncRun.not_before <= now),
                (SyncRun.status == RunStatus.WAITING.value) & (SyncRun.not_before <= now),
            ),
        )
        .with_for_update(of=SyncRun, skip_locked=True)
    ).all()
    for run in runs:
        run.move_to(RunStatus.QUEUED)
        run.enqueued_at = now  # claimed in this transaction, so an overlapping tick does not send it too
    return [run.id for run in runs]


def tick(
    sessions: sessionmaker[Session],
    settings: Settings,
    request: Callable[[uuid.UUID, str, str, str], uuid.UUID | None],
    send: Send,
    alive: Callable[[uuid.UUID], bool],
) -> TickReport:
    """One beat tick: watchdog, due schedules, then hand every unsent run to the workers."""
    report = TickReport()
    with transaction(sessions) as session:
        missing_schedules(session, settings)
        report.requeued = len(watchdog(session, settings, alive))
        due = due_schedules(session, settings)
    for connection_id, capability, resource in due:
        try:
            if request(connection_id, capability, "schedule", resource) is not None:
                report.scheduled += 1
        except Exception:
            log.exception("could not request a scheduled run", extra={"connection_id": str(connection_id)})
    with transaction(sessions) as session:
        unsent = unsent_runs(session, settings)
    report.handed_over = sum(1 for run_id in unsent if send(run_id))
    return report
