"""Processing stored deliveries: claim, route to the connections that chose the resource, let the connector turn
each into records, and commit the records with the delivery's mark."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import Capability, ConnectorSpec, Page, Resource
from connectors.registry import enabled
from core import logs
from core.db import transaction
from core.errors import AuthRevoked, ConnectorError, RateLimited, Retryable, ScopeMissing
from core.logsafe import safe_exception
from core.models import Connection, ConnectionStatus, utcnow
from crm.kinds import kind
from crm.sink import Owner
from sync import retry
from sync.dispatch import SEND_RETRY, hand_over, hand_over_unsent
from sync.engine import SyncEngine
from sync.guard import Throttled
from sync.models import ConnectionResource, RunStatus, SyncRun
from token_vault.fresh import Inactive
from webhooks import inbox
from webhooks.inbox import Claimed

log = logging.getLogger(__name__)

PROCESS_TASK = "synchub.webhooks.process"
QUEUE = "webhooks"
CLAIM_BATCH = 50
"""Deliveries claimed at once: a lease covers the time to process this many, not a whole batch of a thousand."""


def send(celery: Celery, ids: Sequence[int], countdown: float | None = None) -> bool:
    """One task for these deliveries; False when the broker did not take it (the sweeper sends them later)."""
    try:
        celery.send_task(
            PROCESS_TASK,
            args=[list(ids)],
            queue=QUEUE,
            countdown=countdown,
            ignore_result=True,
            retry_policy=SEND_RETRY,
        )
    except Exception as exc:
        log.warning(
            "could not enqueue deliveries; the sweeper will: %s", safe_exception(exc), extra={"count": len(ids)}
        )
        return False
    return True


@dataclass(frozen=True)
class Route:
    """A connection that chose the resource a delivery concerns, and which of its capabilities lists it."""

    connection: Connection
    resource: ConnectionResource
    capability: Capability


@dataclass
class Report:
    """What one task did, and the deliveries to try again after a countdown (seconds)."""

    done: dict[str, int] = field(default_factory=dict)
    again: list[tuple[int, float]] = field(default_factory=list)
    rest: list[int] = field(default_factory=list)

    def count(self, status: str) -> None:
        self.done[status] = self.done.get(status, 0) + 1


class Later(Exception):
    """Try the delivery again after `wait` seconds; `counted` False for a throttled wait."""

    def __init__(self, error: str, wait: float | None, counted: bool = True) -> None:
        super().__init__(error)
        self.wait, self.counted = wait, counted


class Processor:
    def __init__(self, engine: SyncEngine, celery: Celery) -> None:
        self.engine, self.celery = engine, celery
        self.settings = engine.settings
        self.sessions = engine.sessions

    def run(self, ids: Sequence[int], budget_seconds: float | None = None) -> Report:
        """Process the deliveries among `ids` this worker can claim, a few claims at a time, one by one; those
        not reached within the time budget are left in `report.rest` for another task."""
        report = Report()
        deadline = time.monotonic() + (budget_seconds or self.settings.celery.sync_time_budget)
        for start in range(0, len(ids), CLAIM_BATCH):
            if time.monotonic() > deadline:
                report.rest = list(ids[start:])
                break
            with transaction(self.sessions) as session:
                claimed = inbox.claim(session, ids[start : start + CLAIM_BATCH], self.settings.webhooks)
            for item in claimed:
                with logs.bind(delivery_id=item.id, connector=item.connector):
                    status = self.one(item, report)
                report.count(status)
                log.info(
                    "webhook delivery %s",
                    status,
                    extra={"delivery_id": item.id, "connector": item.connector, "status": status},
                )
        return report

    def one(self, item: Claimed, report: Report) -> str:
        try:
            return self._process(item)
        except Later as exc:
            wait = exc.wait if exc.wait is not None else self._backoff(item.attempts)
            with transaction(self.sessions) as session:
                again = inbox.release(session, item.id, str(exc), wait, self.settings.webhooks, exc.counted)
            if again:
                report.again.append((item.id, wait))
                return "retry"
            return inbox.FAILED
        except ConnectorError as exc:
            return self._finish(item.id, inbox.FAILED, error=str(exc))
        except SoftTimeLimitExceeded:  # the task ran out of time: the delivery is not at fault
            with transaction(self.sessions) as session:
                inbox.release(session, item.id, "the task ran out of time", 0.0, self.settings.webhooks, False)
            raise
        except Exception as exc:
            log.error(
                "webhook delivery crashed: %s",
                safe_exception(exc),
                extra={"delivery_id": item.id, "connector": item.connector},
            )
            return self._finish(item.id, inbox.FAILED, error=f"internal error ({type(exc).__name__}); see the log")

    def _backoff(self, attempts: int) -> float:
        return retry.countdown(max(1, attempts), self.settings.celery.retry_base_seconds, retry.LONGEST_WAIT_SECONDS)

    def _spec(self, slug: str) -> ConnectorSpec:
        spec = next((spec for spec in enabled(self.settings) if spec.slug == slug), None)
        if spec is None or spec.webhook is None:
            raise ConnectorError(f"the connector {slug!r} is not enabled or receives no webhooks")
        return spec

    def _process(self, item: Claimed) -> str:
        spec = self._spec(item.connector)
        assert spec.webhook is not None
        pages: list[tuple[Route, Page]] = []
        requested = 0
        for route in self.routes(spec, item.delivery.route_key):
            page = self._through(spec, route, item)
            if page is None:
                continue
            if isinstance(page, Page):
                pages.append((route, page))
            else:
                delay = getattr(spec.webhook, "sync_delay_seconds", None)
                requested += self._request_sync(route, delay, item.received_at)
        applied = self._apply(item.id, pages, requested)
        return inbox.PROCESSED if applied + requested else inbox.IGNORED

    def _through(self, spec: ConnectorSpec, route: Route, item: Claimed) -> Page | bool | None:
        """The connector's page for one route, True for "sync the resource", None when this route takes nothing
        (gated, or the connection lost its grant or access, which is recorded on it)."""
        assert spec.webhook is not None
        connection, capability = route.connection, route.capability
        if self.engine.refusal(connection, capability.name) is not None:
            return None
        row = route.resource
        ctx = self.engine.context(connection, spec, Resource(row.external_id, row.display_name, row.detail))
        try:
            page = spec.webhook.process(item.delivery, ctx)
        except Throttled as exc:
            raise Later(str(exc), exc.retry_after, counted=False) from exc
        except RateLimited as exc:
            raise Later(str(exc), exc.retry_after or None, counted=False) from exc
        except Retryable as exc:
            raise Later(str(exc), None) from exc
        except retry.INFRASTRUCTURE_ERRORS as exc:
            raise Later(f"the hub's database or Redis failed ({type(exc).__name__})", None) from exc
        except AuthRevoked as exc:
            self.engine.needs_reauth(connection.id, str(exc))
            return None
        except ScopeMissing as exc:
            self.engine.scope_lost(connection.id, capability, exc.scopes)
            return None
        except Inactive:
            return None
        return True if page is None else page

    def routes(self, spec: ConnectorSpec, route_key: str) -> list[Route]:
        """Every active connection of this connector's auth provider that selected the resource `route_key` names
        (a Page in two workspaces is two routes), and still sees it listed."""
        capabilities = {c.name: c for c in spec.capabilities if c.resources is not None}
        with self.sessions() as session:
            rows = session.execute(
                select(Connection, ConnectionResource)
                .join(ConnectionResource, ConnectionResource.connection_id == Connection.id)
                .where(
                    ConnectionResource.external_id == route_key,
                    ConnectionResource.capability.in_(list(capabilities)),
                    ConnectionResource.selected,
                    ConnectionResource.gone_at.is_(None),
                    Connection.auth_provider == spec.auth_provider,
                    Connection.status == ConnectionStatus.ACTIVE.value,
                )
                .order_by(Connection.created_at, Connection.id)
            ).all()
            session.expunge_all()
        return [Route(connection, row, capabilities[row.capability]) for connection, row in rows]

    def _request_sync(self, route: Route, delay: float | None = None, received_at: datetime | None = None) -> int:
        """A sync of the routed resource; `delay` (the connector's `sync_delay_seconds`) holds it back from when
        the delivery was received, so that the deliveries of a burst join one run, which the first of them sends
        with that countdown (not left to the next tick)."""
        not_before = (received_at or utcnow()) + timedelta(seconds=delay) if delay else None
        if not_before is not None and received_at is not None and self._covered(route, received_at):
            return 1
        run_id = self.engine.request(
            route.connection.id,
            route.capability.name,
            "webhook",
            route.resource.key,
            not_before=not_before,
            changed_at=received_at,
        )
        if run_id is None:
            return 0
        if not_before is None:
            hand_over_unsent(self.sessions, self.celery, run_id)
            return 1
        with transaction(self.sessions) as session:
            claimed = session.execute(
                update(SyncRun)
                .where(
                    SyncRun.id == run_id,
                    SyncRun.status == RunStatus.QUEUED.value,
                    SyncRun.enqueued_at.is_(None),
                    SyncRun.started_at.is_(None),
                )
                .values(enqueued_at=utcnow())
            )
        if getattr(claimed, "rowcount", 0):
            countdown = max(0.0, (not_before - utcnow()).total_seconds())
            hand_over(self.sessions, self.celery, run_id, countdown=countdown)
        return 1

    def _covered(self, route: Route, received_at: datetime) -> bool:
        """Whether a run of the routed resource started after the delivery arrived (so it reads the change): a
        delivery processed late in a burst then asks for no run after it."""
        with self.sessions() as session:
            found = session.scalar(
                select(SyncRun.id)
                .where(
                    SyncRun.connection_id == route.connection.id,
                    SyncRun.capability == route.capability.name,
                    SyncRun.resource == route.resource.key,
                    SyncRun.started_at >= received_at,
                    SyncRun.status.in_((RunStatus.RUNNING.value, RunStatus.SUCCEEDED.value, RunStatus.WAITING.value)),
                )
                .limit(1)
            )
        return found is not None

    def _apply(self, delivery_id: int, pages: list[tuple[Route, Page]], requested: int) -> int:
        """Each route's records and the delivery's mark in one transaction; a connection disconnected or paused
        meanwhile (its row is read under a share lock, so a disconnect waits for this commit) takes nothing."""
        applied = 0
        with transaction(self.sessions) as session:
            for route, page in pages:
                if self._still_routed(session, route.connection.id, route.resource.id):
                    connection = session.get_one(Connection, route.connection.id)
                    sink = kind(route.capability.record_kind).sink(session, Owner.of(connection, route.resource.key))
                    sink.apply(page.records, page.deleted_ids, None, None)
                    applied += 1
            status = inbox.PROCESSED if applied + requested else inbox.IGNORED
            inbox.finish(session, delivery_id, status, routed=applied + requested)
        return applied

    @staticmethod
    def _still_routed(session: Session, connection_id: uuid.UUID, resource_id: uuid.UUID) -> bool:
        connection = session.get(Connection, connection_id, with_for_update={"read": True}, populate_existing=True)
        if connection is None or connection.status != ConnectionStatus.ACTIVE.value:
            return False
        row = session.get(ConnectionResource, resource_id, populate_existing=True)
        return row is not None and row.selected and row.gone_at is None

    def _finish(self, delivery_id: int, status: str, error: str | None = None) -> str:
        with transaction(self.sessions) as session:
            inbox.finish(session, delivery_id, status, error=error)
        return status
