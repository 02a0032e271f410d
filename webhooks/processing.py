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

from connectors.base import BatchWebhook, Capability, ConnectorSpec, Page
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
        """Process the deliveries among `ids` this worker can claim, a few claims at a time, those not reached
        within the time budget left in `report.rest` for another task. Beside its own, a claim takes the pending
        deliveries of connectors that fetch in batches (a burst's later tasks then find theirs done), and each
        resource's deliveries are processed together: one provider request, one write and one commit for them."""
        report = Report()
        deadline = time.monotonic() + (budget_seconds or self.settings.celery.sync_time_budget)
        batched = sorted(spec.slug for spec in enabled(self.settings) if isinstance(spec.webhook, BatchWebhook))
        for start in range(0, len(ids), CLAIM_BATCH):
            if time.monotonic() > deadline:
                report.rest = list(ids[start:])
                break
            claimed = inbox.claim(
                self.settings.database_url,
                ids[start : start + CLAIM_BATCH],
                self.settings.webhooks,
                also=batched,
                up_to=CLAIM_BATCH,
            )
            for group in self._groups(claimed):
                with logs.bind(delivery_id=group[0].id, connector=group[0].connector):
                    statuses = self.group(group, report)
                for item, status in zip(group, statuses, strict=True):
                    report.count(status)
                    if log.isEnabledFor(logging.INFO):
                        log.info(
                            "webhook delivery %s",
                            status,
                            extra={"delivery_id": item.id, "connector": item.connector, "status": status},
                        )
        return report

    def _groups(self, claimed: Sequence[Claimed]) -> list[list[Claimed]]:
        """The claimed deliveries by (connector, resource) where the connector fetches in batches (of its
        `batch_size` at most), else one by one; in the order they were received."""
        found: dict[tuple[str, str | int], list[Claimed]] = {}
        sizes: dict[str, int] = {}
        for item in claimed:
            size = sizes.setdefault(item.connector, self._batch_size(item.connector))
            key: tuple[str, str | int] = (item.connector, item.delivery.route_key if size > 1 else item.id)
            found.setdefault(key, []).append(item)
        return [
            items[i : i + sizes[connector]]
            for (connector, _), items in found.items()
            for i in range(0, len(items), sizes[connector])
        ]

    def _batch_size(self, slug: str) -> int:
        try:
            webhook = self._spec(slug).webhook
        except ConnectorError:
            return 1
        return max(1, int(webhook.batch_size)) if isinstance(webhook, BatchWebhook) else 1

    def group(self, items: list[Claimed], report: Report) -> list[str]:
        """Process deliveries of one resource together; their statuses, in order."""
        try:
            outcomes = self._process(items)
        except Exception as exc:  # the whole group: each delivery settles as that error says
            if isinstance(exc, SoftTimeLimitExceeded):  # the task ran out of time: the deliveries are not at fault
                with transaction(self.sessions) as session:
                    for item in items:
                        inbox.release(session, item.id, "the task ran out of time", 0.0, self.settings.webhooks, False)
                raise
            return [self._settle(item, exc, report) for item in items]
        return [
            outcome if isinstance(outcome, str) else self._settle(item, outcome, report)
            for item, outcome in zip(items, outcomes, strict=True)
        ]

    def _settle(self, item: Claimed, exc: Exception, report: Report) -> str:
        """A delivery an error stopped: given back to be tried later, or failed."""
        if isinstance(exc, Later):
            wait = exc.wait if exc.wait is not None else self._backoff(item.attempts)
            with transaction(self.sessions) as session:
                again = inbox.release(session, item.id, str(exc), wait, self.settings.webhooks, exc.counted)
            if again:
                report.again.append((item.id, wait))
                return "retry"
            return inbox.FAILED
        if isinstance(exc, ConnectorError):
            return self._finish(item.id, inbox.FAILED, error=str(exc))
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

    def _process(self, items: list[Claimed]) -> list[str | Exception]:
        """Each delivery's status once its records are committed, or the error that stopped it."""
        spec = self._spec(items[0].connector)
        assert spec.webhook is not None
        pages: list[list[tuple[Route, Page]]] = [[] for _ in items]
        requested = [0] * len(items)
        stopped: list[Exception | None] = [None] * len(items)
        delay = getattr(spec.webhook, "sync_delay_seconds", None)
        for route in self.routes(spec, items[0].delivery.route_key):
            results = self._through(spec, route, items)
            for i, result in enumerate(results or ()):
                if stopped[i] is not None or result is None:
                    continue
                if isinstance(result, Exception):
                    stopped[i] = result
                elif isinstance(result, Page):
                    if result.records or result.deleted_ids:  # an empty page: nothing for this connection
                        pages[i].append((route, result))
                else:
                    requested[i] += self._request_sync(route, delay, items[i].received_at)
        going = [i for i in range(len(items)) if stopped[i] is None]
        statuses = self._apply([items[i].id for i in going], [pages[i] for i in going], [requested[i] for i in going])
        done = dict(zip(going, statuses, strict=True))
        return [done[i] if i in done else stopped[i] or ConnectorError("not processed") for i in range(len(items))]

    def _through(
        self, spec: ConnectorSpec, route: Route, items: list[Claimed]
    ) -> list[Page | bool | Exception | None] | None:
        """The connector's page for each delivery on one route (True: "sync the resource"; an error for one the
        provider refused alone, or whose wait is its own), or None when this route takes nothing (gated, or the
        connection lost its grant or access, which is recorded on it)."""
        webhook = spec.webhook
        assert webhook is not None
        connection, capability = route.connection, route.capability
        if self.engine.refusal(connection, capability.name) is not None:
            return None
        row = route.resource
        ctx = self.engine.context(connection, spec, row.resource)
        try:
            if isinstance(webhook, BatchWebhook):
                found: list[Page | Exception | None] = webhook.process_batch([item.delivery for item in items], ctx)
            else:
                found = [webhook.process(item.delivery, ctx) for item in items]
        except Exception as exc:
            if self._stops_route(route, exc):
                return None
            later = self._later(exc)
            if later is exc:
                raise
            raise later from exc
        results: list[Page | bool | Exception | None] = []
        for result in found:
            if isinstance(result, Exception):
                results.append(None if self._stops_route(route, result) else self._later(result))
            else:
                results.append(True if result is None else result)
        return results

    def _stops_route(self, route: Route, exc: Exception) -> bool:
        """A revoked grant, a refused permission or inactive credentials: recorded on the connection, whose route
        then takes nothing."""
        if isinstance(exc, AuthRevoked):
            self.engine.needs_reauth(route.connection.id, str(exc))
            return True
        if isinstance(exc, ScopeMissing):
            self.engine.scope_lost(route.connection.id, route.capability, exc.scopes)
            return True
        return isinstance(exc, Inactive)

    @staticmethod
    def _later(exc: Exception) -> Exception:
        """A wait (throttled, or a provider or infrastructure outage) as `Later`; any other error as it is."""
        if isinstance(exc, Throttled):
            return Later(str(exc), exc.retry_after, counted=False)
        if isinstance(exc, RateLimited):
            return Later(str(exc), exc.retry_after or None, counted=False)
        if isinstance(exc, Retryable):
            return Later(str(exc), None)
        if isinstance(exc, retry.INFRASTRUCTURE_ERRORS):
            return Later(f"the hub's database or Redis failed ({type(exc).__name__})", None)
        return exc

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

    def _apply(self, ids: list[int], pages: list[list[tuple[Route, Page]]], requested: list[int]) -> list[str]:
        """Every route's records of these deliveries (one write per route) and their marks in one transaction; a
        connection disconnected or paused meanwhile (its row is read under a share lock, so a disconnect waits for
        this commit) takes nothing. Their statuses, in order."""
        if not ids:
            return []
        routes: dict[uuid.UUID, tuple[Route, list[int]]] = {}
        for i, found in enumerate(pages):
            for route, _ in found:
                routes.setdefault(route.resource.id, (route, []))[1].append(i)
        applied = [0] * len(ids)
        with transaction(self.sessions) as session:
            for route, which in routes.values():
                if not self._still_routed(session, route.connection.id, route.resource.id):
                    continue
                connection = session.get_one(Connection, route.connection.id)
                written = [page for i in which for taken, page in pages[i] if taken is route]
                records = [record for page in written for record in page.records]
                deleted = [gone for page in written for gone in page.deleted_ids]
                sink = kind(route.capability.record_kind).sink(session, Owner.of(connection, route.resource.key))
                sink.apply(records, deleted, None, None)
                for i in which:
                    applied[i] += 1
            marks = [(applied[i] + requested[i]) for i in range(len(ids))]
            statuses = [inbox.PROCESSED if routed else inbox.IGNORED for routed in marks]
            inbox.finish_many(session, list(zip(ids, statuses, marks, strict=True)))
        return statuses

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
