"""The sync engine: request runs, and execute one run page by page until done or out of time.

Each page's records, its checkpoint and the run's counts commit in one transaction, so a killed worker
resumes from the last committed page with nothing lost and nothing doubled.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import redis
from sqlalchemy import ColumnElement, case, null, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import Capability, ConnectorSettings, ConnectorSpec, Page, Resource, StreamContext
from connectors.registry import capabilities_of, settings_of
from core import logs
from core.db import transaction
from core.errors import AuthRevoked, ConnectorError, CursorExpired, RateLimited, Retryable, ScopeMissing
from core.logsafe import safe_exception
from core.models import Connection, ConnectionStatus, audit, audit_grant_change, utcnow
from core.scopes import after_refusal, allows
from core.settings import Settings
from crm.kinds import holds_records, kind
from crm.sink import Owner, Sink
from oauth.providers import client_settings
from sync import channels, checkpoints, guard, resources, retry, run_lock, schedule
from sync.channels import ChannelStore
from sync.checkpoints import Position, stream_key
from sync.models import ACTIVE_STATUSES, NO_RESOURCE, RunStatus, SyncRun
from sync.prefetch import Prefetch
from sync.throttle import Throttle
from token_vault.credentials import ConnectionCredentials
from token_vault.fresh import FreshTokens, Inactive, reconnect_reason
from token_vault.sealing import KeyRing

log = logging.getLogger(__name__)

ACTIVE = tuple(status.value for status in ACTIVE_STATUSES)


@dataclass(frozen=True)
class Outcome:
    """What the task does next: nothing (`done`), enqueue again now (`continue`) or after `countdown`."""

    action: Literal["done", "continue", "retry", "waiting", "skipped"]
    countdown: float = 0.0
    follow_up: uuid.UUID | None = None
    prepaid: bool = False
    """A `retry` holding a reserved token of the shared rate limit: its next slice's first call spends it."""


def locked(session: Session, run_id: uuid.UUID) -> SyncRun:
    """The run as committed now, locked for this transaction: a disconnect that cancelled it meanwhile is seen,
    and one that comes next waits, so no path writes an ended run back as active."""
    return session.get_one(SyncRun, run_id, with_for_update=True, populate_existing=True)


@dataclass(frozen=True)
class Started:
    """A run as it starts: what it syncs, the resource it reads (`key` '' and `chosen` None without one), and
    where its stream resumes."""

    connection: Connection
    spec: ConnectorSpec
    capability: Capability
    key: str
    chosen: Resource | None
    position: Position


@dataclass(frozen=True)
class Ready:
    """A page as read, with its records already built into rows: the reading thread does that work while the
    writing thread waits on the database for the page before."""

    page: Page
    rows: Any

    @property
    def last(self) -> bool:
        return self.page.last

    @classmethod
    def read(cls, pages: Iterable[Page], sink: type[Sink], owner: Owner) -> Iterator[Ready]:
        for page in pages:
            yield cls(page, sink.prepare(owner, page.records))


def pass_size(done: int, total: int | None, last: bool) -> int | None:
    """A pass's item count, deleted items included: the provider's while it runs (never below what was
    committed), and what was committed once its last page is in, when the provider's count was an estimate."""
    if last:
        return done
    return None if total is None else max(total, done)


class SyncEngine:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        client: redis.Redis,
        ring: KeyRing,
        fresh: FreshTokens,
    ) -> None:
        self.settings, self.sessions, self.redis, self.ring, self.fresh = settings, sessions, client, ring, fresh
        self.throttle = Throttle(client)

    def capability(self, connection: Connection, name: str) -> tuple[ConnectorSpec, Capability] | None:
        return capabilities_of(self.settings, connection.auth_provider).get(name)

    def request(
        self,
        connection_id: uuid.UUID,
        capability: str,
        trigger: str,
        resource: str = NO_RESOURCE,
        not_before: datetime | None = None,
        changed_at: datetime | None = None,
    ) -> uuid.UUID | None:
        """Queue a run of one stream unless one is active (its id is returned); None if the scope gate, the
        connection's status or the resource says no. A run asked for `not_before` is not sent before then, and
        requests that arrive meanwhile join it (a burst of pushes becomes one run); one that wants it sooner
        brings it forward. `changed_at`: when the change asked for was known (a notification's receipt); a run
        that started at or after it reads that change, so it gets no follow-up for it."""
        with transaction(self.sessions) as session:
            connection = session.get(Connection, connection_id)
            if connection is None or connection.status != ConnectionStatus.ACTIVE.value:
                return None
            found = self.capability(connection, capability)
            if self._refusal(connection, found) is not None:
                return None
            assert found is not None
            if self._resource_refusal(session, connection_id, found[1], resource) is not None:
                return None
            schedule.ensure(session, self.settings, connection, capability, resource)
            for _ in range(3):
                existing = self._active_run(session, connection_id, capability, resource)
                if existing is None:
                    run = SyncRun(
                        connection_id=connection_id,
                        capability=capability,
                        resource=resource,
                        trigger=trigger,
                        not_before=not_before,
                    )
                    try:
                        with session.begin_nested():
                            session.add(run)
                        return run.id
                    except IntegrityError:  # a concurrent request made one first: join it
                        continue
                if trigger == "schedule":
                    return existing
                # A run already started: this request becomes one follow-up run after it, never a second one. A run
                # still queued will read the newest data anyway, and starts no later than this request wants. If it
                # ended meanwhile, make a new run instead.
                wanted = null() if not_before is None else not_before
                # Evaluated on the row as committed once its lock is free: a run whose start is committing while
                # this request waits counts as started, with the time it started.
                started_before: ColumnElement[bool] = SyncRun.started_at.is_not(None)
                if changed_at is not None:
                    started_before = started_before & (SyncRun.started_at < changed_at)
                sooner = SyncRun.started_at.is_(None) & (
                    SyncRun.not_before.is_not(None) if not_before is None else SyncRun.not_before > not_before
                )
                flagged = session.execute(
                    update(SyncRun)
                    .where(SyncRun.id == existing, SyncRun.status.in_(ACTIVE))
                    .values(
                        follow_up=SyncRun.follow_up | started_before,
                        not_before=case((sooner, wanted), else_=SyncRun.not_before),
                    )
                )
                if getattr(flagged, "rowcount", 0):
                    return existing
            return self._active_run(session, connection_id, capability, resource)

    def streams(self, connection_id: uuid.UUID, capability: str) -> list[str]:
        """The resource keys of a capability's streams on a connection: `''` alone for a capability without
        resources, else each selected resource the provider still lists."""
        with self.sessions() as session:
            connection = session.get(Connection, connection_id)
            found = self.capability(connection, capability) if connection is not None else None
            return [] if found is None else resources.keys(session, connection_id, found[1])

    @staticmethod
    def _active_run(session: Session, connection_id: uuid.UUID, capability: str, resource: str) -> uuid.UUID | None:
        return session.scalar(
            select(SyncRun.id).where(
                SyncRun.connection_id == connection_id,
                SyncRun.capability == capability,
                SyncRun.resource == resource,
                SyncRun.status.in_(ACTIVE),
            )
        )

    def context(
        self,
        connection: Connection,
        spec: ConnectorSpec,
        resource: Resource | None = None,
        calls: guard.Calls | None = None,
        reserve_within: float = 0.0,
        prepaid: bool = False,
    ) -> StreamContext:
        """What a stream, a listing or a lifecycle call runs with: the connection's fresh tokens, the connector's
        settings, and every provider call through the shared rate buckets and the retry policy."""
        client = client_settings(self.settings, connection.auth_provider) if spec.needs_oauth_client else None
        own = settings_of(self.settings, spec)
        bare = StreamContext(
            connection_id=str(connection.id),
            credentials=ConnectionCredentials(self.fresh, connection.id),
            base_url=self._base_url(connection) if spec.needs_oauth_client else connection.provider_account_id,
            settings=own,
            sent=(calls or guard.Calls()).sent,
            resource=resource,
            app_id=client.client_id if client is not None else None,
            app_secret=client.client_secret.get_secret_value() if client is not None else None,
            channels=self._channels(connection, spec, resource, own),
        )
        buckets = guard.buckets(self.settings, spec, bare)
        attempt = guard.Guard(self.throttle, buckets, reserve_within, guard.Prepaid(prepaid)).attempt
        return dataclasses.replace(bare, attempt=attempt)

    def _channels(
        self, connection: Connection, spec: ConnectorSpec, resource: Resource | None, own: ConnectorSettings
    ) -> ChannelStore | None:
        """The push channels of a resource, for a connector with a webhook, when the hub can take notifications."""
        if resource is None or spec.webhook is None:
            return None
        where = channels.address(self.settings, spec.slug, bool(getattr(own, "push_allow_http", False)))
        capability = next((c.name for c in spec.capabilities if c.lifecycle is not None), None)
        if where is None or capability is None:
            return None
        return ChannelStore(self.sessions, connection.id, capability, resource, where)

    def worked_on(self, run_id: uuid.UUID) -> bool:
        """Whether some worker holds this run's lock right now."""
        return run_lock.held(self.redis, run_id)

    def execute(self, run_id: uuid.UUID, budget_seconds: float | None = None, prepaid: bool = False) -> Outcome:
        """Work on a run until it ends or the budget is spent; a run already being worked on is skipped. Every line
        logged meanwhile carries the run's id (and, once it has started, its connection and capability).
        `prepaid`: the run holds a reserved token, which its first provider call spends."""
        with logs.bind(run_id=str(run_id)):
            with run_lock.hold(self.redis, run_id, self.settings.celery.run_lock_seconds) as lock:
                if lock is None:
                    log.info("run skipped: another worker is on it", extra={"action": "skipped"})
                    return Outcome("skipped")
                deadline = time.monotonic() + (budget_seconds or self.settings.celery.sync_time_budget)
                outcome = self._execute(run_id, deadline, lock.check, prepaid)
            log.info("run slice ended", extra={"action": outcome.action})
            return outcome

    def _execute(
        self, run_id: uuid.UUID, deadline: float, keep_lock: Callable[[], object], prepaid: bool = False
    ) -> Outcome:
        started = self._start(run_id)
        if started is None:
            return Outcome("done")
        connection, capability, position = started.connection, started.capability, started.position
        logs.bind(  # until execute's binding ends
            connection_id=str(connection.id),
            workspace_id=connection.workspace_id,
            capability=capability.name,
            connector=started.spec.slug,
            resource=started.key or None,
        )
        log.info("run slice started", extra={"status": "running"})
        calls = guard.Calls()
        reserve = retry.longest_countdown(self.settings.celery)
        stream = capability.stream(self.context(connection, started.spec, started.chosen, calls, reserve, prepaid))
        listing = self.context(connection, started.spec, None, calls) if capability.resources is not None else None
        sink = kind(capability.record_kind).sink
        owner = Owner.of(connection, started.key)
        restarted = False
        while True:
            pages = None
            try:
                if (
                    listing is not None
                    and position.starts_full_pass
                    and not self._list_resources(run_id, connection, capability, listing, calls)
                ):
                    return Outcome("done")
                fresh = position.starts_full_pass and not self._holds_records(capability, owner)
                pages = Prefetch(Ready.read(stream.read(position.cursor or None), sink, owner))
                while True:
                    ready, ahead = pages.next(fetch_ahead=time.monotonic() < deadline)
                    if ready is None:
                        return self._fail(run_id, "the connector's stream ended before its last page", calls)
                    position, ended = self._commit(
                        run_id, owner, capability, position, ready.page, calls, ready.rows, fresh
                    )
                    keep_lock()
                    if ended is not None:
                        return ended
                    if not ahead:
                        return Outcome("continue")
            except CursorExpired:
                if restarted:
                    return self._fail(run_id, "the provider refused a fresh full sync's cursor", calls)
                restarted = True
                position = self._restart_full(run_id, connection.id, capability, started.key)
            except guard.Throttled as exc:
                return self._later(
                    run_id, str(exc), exc.retry_after, calls, throttled=True, exact=True, reserved=exc.reserved
                )
            except RateLimited as exc:
                return self._later(run_id, str(exc), exc.retry_after, calls, throttled=True)
            except Retryable as exc:
                return self._later(run_id, str(exc), None, calls)
            except AuthRevoked as exc:
                return self._needs_reauth(run_id, connection.id, str(exc), calls)
            except Inactive as exc:
                return self._cancel(run_id, f"stopped: {exc}", calls)
            except ScopeMissing as exc:
                return self._scope_lost(run_id, connection.id, capability, exc.scopes, calls)
            except ConnectorError as exc:
                return self._fail(run_id, str(exc), calls)
            except retry.INFRASTRUCTURE_ERRORS as exc:
                log.warning(
                    "database or Redis failed during a run: %s", safe_exception(exc), extra={"run_id": str(run_id)}
                )
                return self._later(run_id, f"the hub's database or Redis failed ({type(exc).__name__})", None, calls)
            except Exception as exc:
                log.error("sync run crashed: %s", safe_exception(exc), extra={"run_id": str(run_id)})
                return self._fail(run_id, f"internal error ({type(exc).__name__}); see the worker log", calls)
            finally:
                if pages is not None:
                    pages.close()
                self._count_late(run_id, calls)

    def _list_resources(
        self,
        run_id: uuid.UUID,
        connection: Connection,
        capability: Capability,
        ctx: StreamContext,
        calls: guard.Calls,
    ) -> bool:
        """Before a full pass, the provider's list of the capability's resources: one it no longer lists stops
        syncing (this run too, if it reads that one). False if this run was stopped."""
        assert capability.resources is not None
        found = capability.resources(ctx)
        with transaction(self.sessions) as session:
            resources.refresh(session, connection, capability.name, found)
            run = session.get_one(SyncRun, run_id, populate_existing=True)
            run.api_calls += calls.take()
            return run.active

    def _base_url(self, connection: Connection) -> str | None:
        client = client_settings(self.settings, connection.auth_provider)
        return client.base_url if client is not None else None

    def _start(self, run_id: uuid.UUID) -> Started | None:
        with transaction(self.sessions) as session:
            run = session.get(SyncRun, run_id, with_for_update=True, populate_existing=True)
            if run is None or run.status not in ACTIVE:
                return None
            connection = session.get_one(Connection, run.connection_id)
            found = self.capability(connection, run.capability)
            reason = self._refusal(connection, found)
            if reason is None and found is not None:
                reason = self._resource_refusal(session, connection.id, found[1], run.resource)
            if reason is not None:
                run.move_to(RunStatus.CANCELLED, reason)
                return None
            assert found is not None
            row = resources.find(session, connection.id, run.capability, run.resource) if run.resource else None
            chosen = row.resource if row is not None else None
            position = checkpoints.load(session, self.ring, connection, stream_key(run.capability, run.resource))
            run.move_to(RunStatus.RUNNING)
            run.attempts += 1
            run.full_sync = run.full_sync or position.in_full_pass
            return Started(connection, found[0], found[1], run.resource, chosen, position)

    def refusal(self, connection: Connection, capability: str) -> str | None:
        """Why the capability may not run on this connection now, None if it may."""
        return self._refusal(connection, self.capability(connection, capability))

    @staticmethod
    def _refusal(connection: Connection, found: tuple[ConnectorSpec, Capability] | None) -> str | None:
        if connection.status != ConnectionStatus.ACTIVE.value:
            return f"the connection is {connection.status.replace('_', ' ')}"
        if found is None or found[1].name not in connection.capabilities:
            return "this capability is not enabled"
        if not allows(connection.granted_scopes, found[1].required):
            return "access was not granted"
        return None

    @staticmethod
    def _resource_refusal(session: Session, connection_id: uuid.UUID, capability: Capability, key: str) -> str | None:
        """Why a stream may not run: a capability with resources runs one selected resource still listed, one
        without runs none."""
        if capability.resources is None:
            return "this capability has no resources" if key else None
        row = resources.find(session, connection_id, capability.name, key) if key else None
        if row is None:
            return "choose a resource to sync"
        if not row.selected:
            return resources.DESELECTED
        return resources.GONE if row.gone_at is not None else None

    def _holds_records(self, capability: Capability, owner: Owner) -> bool:
        with self.sessions() as session:
            return holds_records(session, kind(capability.record_kind), owner.connection_id, owner.resource)

    def _commit(
        self,
        run_id: uuid.UUID,
        owner: Owner,
        capability: Capability,
        position: Position,
        page: Page,
        calls: guard.Calls,
        rows: Any = None,
        fresh: bool = False,
    ) -> tuple[Position, Outcome | None]:
        """Commit one page with its checkpoint and the calls made so far; an Outcome when the run ends here (last
        page, or paused)."""
        full_pass_id = (position.full_pass_id or str(uuid.uuid4())) if page.full else None
        with transaction(self.sessions) as session:
            # Lock the run first: a disconnect (which cancels it and erases the data) or the watchdog may have
            # moved it meanwhile, and then this page must not be written back.
            current = session.get_one(SyncRun, run_id, with_for_update=True, populate_existing=True)
            current.api_calls += calls.take()
            if current.status != RunStatus.RUNNING.value:
                return position, Outcome("done")
            connection_id, resource = owner.connection_id, owner.resource
            connection = session.get_one(Connection, connection_id)
            sink = kind(capability.record_kind).sink(session, owner)
            counts = sink.apply(page.records, page.deleted_ids, full_pass_id, rows, fresh=fresh)
            if page.last and full_pass_id is not None:
                if page.window is not None:  # a windowed pass deletes only what falls inside its window
                    counts.deleted += sink.delete_unseen(full_pass_id, window=page.window)  # type: ignore[call-arg]
                else:
                    counts.deleted += sink.delete_unseen(full_pass_id)
            items = len(page.records) + len(page.deleted_ids)
            done = position.done + items
            after = Position(dict(page.checkpoint), None if page.last else full_pass_id, 0 if page.last else done)
            checkpoints.save(session, self.ring, connection, stream_key(capability.name, resource), after)
            run = session.get_one(SyncRun, run_id)
            run.records_created += counts.created
            run.records_updated += counts.updated
            run.records_deleted += counts.deleted
            run.records_suppressed += counts.suppressed
            run.records_seen += items
            total = page.total if page.total is not None else run.progress_total
            run.progress_done, run.progress_total = done, pass_size(done, total, page.last)
            run.heartbeat_at = utcnow()
            if page.last:
                run.move_to(RunStatus.SUCCEEDED)
                schedule.succeeded(session, connection_id, capability.name, resource)
                return after, Outcome("done", follow_up=self._follow_up(session, run))
            if connection.status != ConnectionStatus.ACTIVE.value:
                run.move_to(
                    RunStatus.CANCELLED,
                    f"stopped after a page: the connection is {connection.status.replace('_', ' ')}",
                )
                return after, Outcome("done")
        return after, None

    @staticmethod
    def _follow_up(session: Session, run: SyncRun) -> uuid.UUID | None:
        """A request that arrived while this run worked gets exactly one run after it."""
        session.flush()
        session.refresh(run, ["follow_up"])
        if not run.follow_up:
            return None
        follow = SyncRun(
            connection_id=run.connection_id, capability=run.capability, resource=run.resource, trigger="follow_up"
        )
        session.add(follow)
        session.flush()
        return follow.id

    def _restart_full(
        self, run_id: uuid.UUID, connection_id: uuid.UUID, capability: Capability, resource: str
    ) -> Position:
        with transaction(self.sessions) as session:
            run = locked(session, run_id)
            if not run.active:  # a disconnect ended it: its cursor is gone already, and the next commit stops
                return Position()
            connection = session.get_one(Connection, connection_id)
            checkpoints.clear(session, connection, stream_key(capability.name, resource))
            run.full_sync, run.progress_done, run.progress_total = True, 0, None
        log.info("cursor expired; full pass", extra={"run_id": str(run_id)})
        return Position()

    def _later(
        self,
        run_id: uuid.UUID,
        error: str,
        retry_after: float | None,
        calls: guard.Calls,
        throttled: bool = False,
        exact: bool = False,
        reserved: bool = False,
    ) -> Outcome:
        """Reschedule: a countdown message when short enough, else a `waiting` run that beat picks up.

        A throttled wait does not use up the retry budget; a failure does, and the last one fails the run. A slice
        that waits for its quota before its first call is not counted as an attempt.
        """
        limits = self.settings.celery
        with transaction(self.sessions) as session:
            run = locked(session, run_id)
            run.api_calls += calls.take()
            if not run.active:  # a disconnect cancelled it meanwhile
                return Outcome("done")
            if throttled and calls.total == 0:
                run.attempts = max(0, run.attempts - 1)
            if not throttled:
                run.retries += 1
                if run.retries >= self.settings.schedule.max_attempts:
                    return self._fail_in(session, run, f"gave up after {run.retries} attempts: {error}")
            attempt = max(1, run.retries)
            if reserved and retry_after is not None:
                wait = retry_after  # the token is ours at exactly that moment
            elif exact and retry_after is not None:
                wait = max(retry.SHORTEST_WAIT_SECONDS, retry_after)
            else:
                wait = retry.countdown(attempt, limits.retry_base_seconds, retry.LONGEST_WAIT_SECONDS, retry_after)
            run.error = f"will retry: {error}"
            run.not_before = utcnow() + timedelta(seconds=wait)
            if wait > retry.longest_countdown(limits):
                run.move_to(RunStatus.WAITING)
                return Outcome("waiting", wait)
            run.move_to(RunStatus.QUEUED)
        return Outcome("retry", wait, prepaid=reserved)

    def _cancel(self, run_id: uuid.UUID, reason: str, calls: guard.Calls) -> Outcome:
        with transaction(self.sessions) as session:
            run = locked(session, run_id)
            run.api_calls += calls.take()
            if run.active:
                run.move_to(RunStatus.CANCELLED, reason)
        return Outcome("done")

    def _fail(self, run_id: uuid.UUID, error: str, calls: guard.Calls) -> Outcome:
        with transaction(self.sessions) as session:
            run = locked(session, run_id)
            run.api_calls += calls.take()
            return self._fail_in(session, run, error)

    def _count_late(self, run_id: uuid.UUID, calls: guard.Calls) -> None:
        """Calls not yet on the run's row: a fetch ahead still in flight when the run's last transaction ran."""
        late = calls.take()
        if late:
            with transaction(self.sessions) as session:
                session.execute(update(SyncRun).where(SyncRun.id == run_id).values(api_calls=SyncRun.api_calls + late))

    def _fail_in(self, session: Session, run: SyncRun, error: str) -> Outcome:
        if not run.active:  # a disconnect cancelled it meanwhile
            return Outcome("done")
        run.move_to(RunStatus.FAILED, error)
        connection = session.get_one(Connection, run.connection_id)
        schedule.failed(session, self.settings, connection, run.capability, error, run.resource)
        return Outcome("done")

    def needs_reauth(self, connection_id: uuid.UUID, reason: str) -> None:
        """The provider no longer honours the connection's grant: it needs the user to connect again."""
        with transaction(self.sessions) as session:
            connection = session.get_one(Connection, connection_id)
            if connection.status == ConnectionStatus.ACTIVE.value:
                connection.move_to(ConnectionStatus.NEEDS_REAUTH, reconnect_reason(reason))
                audit(session, connection, "system", "connection.needs_reauth")

    def _needs_reauth(self, run_id: uuid.UUID, connection_id: uuid.UUID, reason: str, calls: guard.Calls) -> Outcome:
        self.needs_reauth(connection_id, reason)
        return self._fail(run_id, f"reconnect needed: {reason}", calls)

    def scope_lost(self, connection_id: uuid.UUID, capability: Capability, named: frozenset[str]) -> None:
        """The provider refused a call for want of access: record it as not granted, so the gate stops the
        capability (it shows "grant access") until the user grants it again."""
        with transaction(self.sessions) as session:
            connection = session.get_one(Connection, connection_id)
            before = set(connection.granted_scopes)
            connection.granted_scopes = after_refusal(connection.granted_scopes, capability.required, named)
            audit_grant_change(session, connection, "system", before)

    def _scope_lost(
        self,
        run_id: uuid.UUID,
        connection_id: uuid.UUID,
        capability: Capability,
        named: frozenset[str],
        calls: guard.Calls,
    ) -> Outcome:
        self.scope_lost(connection_id, capability, named)
        return self._fail(run_id, f"grant access: {capability.display_name.lower()} access was not granted", calls)
