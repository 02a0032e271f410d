"""What is due comes from the database, never from the queue.

Each stream, a (connection, capability, resource), has a `schedules` row with `next_run_at`. Beat's tick inserts
runs for the due ones in one statement, hands to the workers, in batches, those and the runs that were never
enqueued (Redis was down) or whose `waiting` time has come, and re-queues runs whose heartbeat stopped (the
watchdog). Failures push `next_run_at` out on a doubling delay,
never past the poll interval, so the schedule keeps going and the next success clears the error.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import Capability, ConnectorSpec
from connectors.registry import capabilities_of, settings_of
from core.db import transaction
from core.models import Connection, ConnectionStatus, utcnow
from core.scopes import allows
from core.settings import MAX_POLL_SECONDS, MIN_POLL_SECONDS, Settings
from sync.models import NO_RESOURCE, ConnectionResource, RunStatus, Schedule, SyncRun, queued_again

log = logging.getLogger(__name__)

PUSHED_POLL_FACTOR = 4
"""A stream with a live push channel is still polled, this many times less often."""


def interval_seconds(settings: Settings, spec: ConnectorSpec, capability: Capability, schedule: Schedule | None) -> int:
    """Per connection, else per deployment, else the connector's own interval, always within 5 min..24 h."""
    return interval_of(settings, spec, capability, schedule.interval_seconds if schedule is not None else None)


def interval_of(settings: Settings, spec: ConnectorSpec, capability: Capability, chosen: int | None) -> int:
    if not chosen:
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


DUE = text(
    """
    SELECT s.connection_id, s.capability, s.resource, s.interval_seconds, c.auth_provider, c.granted_scopes,
           c.capabilities, r.selected, r.gone_at IS NOT NULL AS gone,
           EXISTS (
             SELECT 1 FROM push_channels p
             WHERE p.connection_id = s.connection_id AND p.capability = s.capability AND p.resource = s.resource
               AND p.stopped_at IS NULL AND p.expires_at > :now
           ) AS pushed
    FROM schedules s
    JOIN connections c ON c.id = s.connection_id
    LEFT JOIN connection_resources r
      ON r.connection_id = s.connection_id AND r.capability = s.capability AND r.id::text = s.resource
    WHERE s.next_run_at <= :now AND c.status = 'active'
    FOR UPDATE OF s SKIP LOCKED
    """
)

MOVE_ON = text(
    """
    UPDATE schedules s SET next_run_at = v.next_run_at
    FROM unnest(CAST(:connection_ids AS uuid[]), CAST(:capabilities AS text[]), CAST(:resources AS text[]),
                CAST(:next_run_at AS timestamptz[])) AS v(connection_id, capability, resource, next_run_at)
    WHERE s.connection_id = v.connection_id AND s.capability = v.capability AND s.resource = v.resource
    """
)

# One statement: a run for each due stream that has no active run (the one-active-run index decides), already
# marked as sent at `stamp`, the time its message names.
INSERT_RUNS = text(
    """
    INSERT INTO sync_runs (id, connection_id, capability, resource, status, trigger, full_sync, records_seen,
        records_created, records_updated, records_deleted, api_calls, progress_done, attempts, retries, follow_up,
        created_at, enqueued_at)
    SELECT gen_random_uuid(), v.connection_id, v.capability, v.resource, 'queued', 'schedule', false, 0, 0, 0, 0, 0,
        0, 0, 0, false, :stamp, :stamp
    FROM unnest(CAST(:connection_ids AS uuid[]), CAST(:capabilities AS text[]), CAST(:resources AS text[]))
        AS v(connection_id, capability, resource)
    ON CONFLICT (connection_id, capability, resource) WHERE status IN ('queued', 'running', 'waiting') DO NOTHING
    RETURNING id
    """
)


@dataclass(frozen=True)
class Due:
    """A due stream as the tick reads it, with what the gate needs."""

    connection_id: uuid.UUID
    capability: str
    resource: str
    chosen_interval: int | None
    auth_provider: str
    granted_scopes: list[str]
    capabilities: list[str]
    selected: bool | None
    gone: bool
    pushed: bool


def may_run(due: Due, capability: Capability) -> bool:
    """The scope gate and the resource rules of `SyncEngine.request`, on a row the tick read (the connection is
    active by the tick's query)."""
    if capability.name not in due.capabilities or not allows(due.granted_scopes, capability.required):
        return False
    if capability.resources is None:
        return not due.resource
    return bool(due.resource) and bool(due.selected) and not due.gone


def schedule_due(session: Session, settings: Settings, stamp: datetime) -> list[uuid.UUID]:
    """Move every due schedule on by its interval with jitter, and insert a run for each due stream that may run
    and has none active, in one statement. O(due): nothing is read for a stream that is not due."""
    rows = [Due(*row) for row in session.execute(DUE, {"now": stamp})]
    offered: dict[str, dict[str, tuple[ConnectorSpec, Capability]]] = {}
    moved: list[tuple[uuid.UUID, str, str, datetime]] = []
    wanted: list[Due] = []
    for due in rows:
        if due.auth_provider not in offered:
            offered[due.auth_provider] = capabilities_of(settings, due.auth_provider)
        found = offered[due.auth_provider].get(due.capability)
        if found is None:
            continue
        seconds = interval_of(settings, found[0], found[1], due.chosen_interval)
        if due.pushed:
            seconds = min(MAX_POLL_SECONDS, seconds * PUSHED_POLL_FACTOR)  # a backstop: pushes bring the changes
        moved.append((due.connection_id, due.capability, due.resource, stamp + jittered(settings, seconds)))
        if may_run(due, found[1]):
            wanted.append(due)
    if moved:
        columns = list(zip(*moved, strict=True))
        session.execute(
            MOVE_ON,
            {
                "connection_ids": list(columns[0]),
                "capabilities": list(columns[1]),
                "resources": list(columns[2]),
                "next_run_at": list(columns[3]),
            },
        )
    if not wanted:
        return []
    inserted = session.execute(
        INSERT_RUNS,
        {
            "stamp": stamp,
            "connection_ids": [due.connection_id for due in wanted],
            "capabilities": [due.capability for due in wanted],
            "resources": [due.resource for due in wanted],
        },
    )
    return [row[0] for row in inserted]


def missing_schedules(session: Session, settings: Settings) -> None:
    """Streams without a schedule get theirs, due now: connections made before schedules existed, or anything
    else that slipped past the paths that make schedules (a request, a chosen resource, a listing). It reads
    every active connection, so it runs on its own, slower beat entry, not in the tick."""
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


def unsent_runs(session: Session, settings: Settings, stamp: datetime) -> list[uuid.UUID]:
    """Queued runs never handed to a worker (or handed over so long ago the message is surely lost), and
    waiting runs whose time has come: queued, and claimed as sent at `stamp` in this transaction, so an
    overlapping tick does not send them too."""
    lost = stamp - timedelta(seconds=settings.schedule.heartbeat_timeout_seconds)
    claim = (
        select(SyncRun.id)
        .join(Connection, Connection.id == SyncRun.connection_id)
        .where(
            Connection.status == ConnectionStatus.ACTIVE.value,
            or_(
                (SyncRun.status == RunStatus.QUEUED.value)
                & or_(SyncRun.enqueued_at.is_(None), SyncRun.enqueued_at < lost)
                & or_(SyncRun.not_before.is_(None), SyncRun.not_before <= stamp),
                (SyncRun.status == RunStatus.WAITING.value) & (SyncRun.not_before <= stamp),
            ),
        )
        .with_for_update(of=SyncRun, skip_locked=True)
    )
    claimed = session.scalars(queued_again(SyncRun.id.in_(claim), enqueued_at=stamp).returning(SyncRun.id))
    return list(claimed)


SendBatches = Callable[[list[uuid.UUID], datetime], int]


def tick(
    sessions: sessionmaker[Session], settings: Settings, send: SendBatches, alive: Callable[[uuid.UUID], bool]
) -> TickReport:
    """One beat tick, in one transaction: watchdog, the due schedules' runs inserted in one statement, and every
    unsent run claimed; then the claimed runs go to the workers in batches (`send` returns how many it sent).
    It costs O(due): an idle tick reads only what its indexes say is due, stale or unsent."""
    report = TickReport()
    stamp = utcnow()
    with transaction(sessions) as session:
        report.requeued = len(watchdog(session, settings, alive))
        scheduled = schedule_due(session, settings, stamp)
        unsent = unsent_runs(session, settings, stamp)
    report.scheduled = len(scheduled)
    if scheduled or unsent:
        report.handed_over = send(scheduled + unsent, stamp)
    return report
