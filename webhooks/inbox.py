"""The durable inbox: store deliveries once (a provider's POSTs go through `webhooks.intake` instead, on the event
loop), lease them to one worker at a time, finish, release or give up, and the sweeper's and operator's passes over
what is left."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from connectors.base import Delivery
from core.models import utcnow
from core.settings import WebhookSettings
from webhooks.models import DeliveryStatus, WebhookDelivery

PENDING, PROCESSED, IGNORED, FAILED = (s.value for s in DeliveryStatus)
FINISHED = (PROCESSED, IGNORED, FAILED)
SWEEP_BATCH = 1000


@dataclass(frozen=True)
class Stored:
    """What a POST stored: how many deliveries it carried, and the ids of the new ones to process."""

    received: int
    new: int
    pending: list[int]


@dataclass(frozen=True)
class Claimed:
    id: int
    connector: str
    attempts: int
    delivery: Delivery
    received_at: datetime | None = None


def store(session: Session, connector: str, deliveries: Sequence[Delivery]) -> Stored:
    """Insert the deliveries in one statement; one already stored (a redelivery) is left as it is."""
    if not deliveries:
        return Stored(0, 0, [])
    now = utcnow()
    rows = [
        {
            "connector": connector,
            "dedupe_key": delivery.dedupe_key,
            "route_key": delivery.route_key,
            "payload": dict(delivery.payload),
            "status": IGNORED if delivery.ignored else PENDING,
            "received_at": now,
            "finished_at": now if delivery.ignored else None,
        }
        for delivery in deliveries
    ]
    table: Table = WebhookDelivery.__table__  # type: ignore[assignment]
    statement = (
        insert(table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["connector", "dedupe_key"])
        .returning(table.c.id, table.c.status)
    )
    created = session.execute(statement).all()
    return Stored(len(deliveries), len(created), sorted(row.id for row in created if row.status == PENDING))


def _claimable(now: datetime) -> Any:
    model = WebhookDelivery
    return (
        (model.status == PENDING)
        & (model.claimed_until.is_(None) | (model.claimed_until < now))
        & (model.not_before.is_(None) | (model.not_before <= now))
    )


CLAIM = """
UPDATE webhook_deliveries SET claimed_until = %(until)s, attempts = attempts + 1
WHERE id = ANY(
    ARRAY(
        SELECT id FROM webhook_deliveries
        WHERE id = ANY(%(ids)s) AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < %(now)s)
          AND (not_before IS NULL OR not_before <= %(now)s) AND attempts < %(max_attempts)s
        FOR UPDATE SKIP LOCKED
    ) || ARRAY(
        SELECT id FROM webhook_deliveries
        WHERE status = 'pending' AND connector = ANY(%(also)s) AND NOT id = ANY(%(ids)s)
          AND (claimed_until IS NULL OR claimed_until < %(now)s) AND (not_before IS NULL OR not_before <= %(now)s)
          AND attempts < %(max_attempts)s
        ORDER BY received_at
        LIMIT %(more)s
        FOR UPDATE SKIP LOCKED
    )
)
RETURNING id, connector, attempts, dedupe_key, route_key, payload, received_at
"""
CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 10_000
_claimers: dict[tuple[int, str], psycopg.Connection[Any]] = {}


def _claimer(database_url: str) -> psycopg.Connection[Any]:
    """This process's autocommit connection for claims (a claim is one statement, so autocommit is atomic)."""
    key = (os.getpid(), database_url)
    connection = _claimers.get(key)
    if connection is None or connection.closed or connection.broken:
        info = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = psycopg.connect(
            info,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )
        _claimers[key] = connection
    return connection


def claim(
    database_url: str, ids: Sequence[int], settings: WebhookSettings, also: Sequence[str] = (), up_to: int = 0
) -> list[Claimed]:
    """Lease the deliveries among `ids` that are pending, due and held by no other worker (rows another
    transaction holds are skipped, not waited for); each claim counts as an attempt. With `also`, other such
    deliveries of those connectors are leased beside them, oldest first, up to `up_to` in all: under a burst a
    worker takes what the tasks queued behind its own name, and those tasks then find nothing to claim.

    One statement in one round trip on a connection of this process's own, in autocommit: most tasks of a burst
    find their deliveries claimed already, and a session's pool check, BEGIN and COMMIT cost them more than this."""
    now = utcnow()
    params = {
        "ids": [int(i) for i in ids],
        "also": list(also),
        "more": max(0, up_to - len(ids)),
        "now": now,
        "until": now + timedelta(seconds=settings.claim_seconds),
        "max_attempts": settings.max_attempts,
    }
    connection = _claimer(database_url)
    try:
        rows = connection.execute(CLAIM, params, prepare=True).fetchall()
    except psycopg.Error:
        if connection.broken or connection.closed or connection.info.transaction_status != TransactionStatus.IDLE:
            connection.close()
        raise
    return [
        Claimed(row[0], row[1], row[2], Delivery(row[3], row[4], row[5] or {}), row[6])
        for row in sorted(rows, key=lambda row: int(row[0]))
    ]


def finish(session: Session, delivery_id: int, status: str, routed: int = 0, error: str | None = None) -> bool:
    """Mark a pending delivery done (`processed`, `ignored` or `failed`); False if it was not pending."""
    model = WebhookDelivery
    done = session.execute(
        update(model)
        .where(model.id == delivery_id, model.status == PENDING)
        .values(status=status, routed=routed, error=error, finished_at=utcnow(), claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(done, "rowcount", 0))


def finish_many(session: Session, marks: Sequence[tuple[int, str, int]]) -> None:
    """`finish` for many deliveries, each (id, status, routed): one statement per distinct (status, routed)."""
    by: dict[tuple[str, int], list[int]] = {}
    for delivery_id, status, routed in marks:
        by.setdefault((status, routed), []).append(delivery_id)
    now = utcnow()
    model = WebhookDelivery
    for (status, routed), ids in by.items():
        session.execute(
            update(model)
            .where(model.id.in_(ids), model.status == PENDING)
            .values(status=status, routed=routed, error=None, finished_at=now, claimed_until=None)
            .execution_options(synchronize_session=False)
        )


def release(
    session: Session, delivery_id: int, error: str, wait: float, settings: WebhookSettings, counted: bool = True
) -> bool:
    """Give a claimed delivery back to be tried after `wait` seconds; a throttled wait (`counted` False) does not
    use up an attempt. After the last attempt it is marked failed instead. True if it is to be tried again."""
    row = session.get(WebhookDelivery, delivery_id, with_for_update=True, populate_existing=True)
    if row is None or row.status != PENDING:
        return False
    if not counted:
        row.attempts = max(0, row.attempts - 1)
    row.claimed_until, row.error = None, error
    if row.attempts >= settings.max_attempts:
        row.status, row.finished_at = FAILED, utcnow()
        row.error = f"gave up after {row.attempts} attempts: {error}"
        return False
    row.not_before = utcnow() + timedelta(seconds=wait)
    return True


def sweep(session: Session, settings: WebhookSettings) -> tuple[int, list[int]]:
    """Fail the deliveries whose attempts are used up (their last holder gone), and pick the pending ones to send
    again: older than the grace period, not held, due, and not sent again within the grace period (a message
    lost before the queue took it, or a worker killed holding it). Returns (failed, ids to send)."""
    now = utcnow()
    model = WebhookDelivery
    grace = now - timedelta(seconds=settings.grace_seconds)
    unheld = (model.status == PENDING) & (model.claimed_until.is_(None) | (model.claimed_until < now))
    failed = session.execute(
        update(model)
        .where(unheld, model.attempts >= settings.max_attempts)
        .values(
            status=FAILED, finished_at=now, claimed_until=None, error=f"gave up after {settings.max_attempts} attempts"
        )
        .execution_options(synchronize_session=False)
    )
    stale = (
        select(model.id)
        .where(
            _claimable(now),
            model.attempts < settings.max_attempts,
            model.received_at < grace,
            model.swept_at.is_(None) | (model.swept_at < grace),
        )
        .order_by(model.id)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    )
    resent = session.scalars(
        update(model)
        .where(model.id.in_(stale.scalar_subquery()))
        .values(swept_at=now)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    ).all()
    return int(getattr(failed, "rowcount", 0) or 0), sorted(resent)


def purge(session: Session, retention_days: int) -> int:
    """Drop the payloads of deliveries finished more than `retention_days` ago (failed ones are kept for an
    operator to retry); the rows stay, so a late redelivery is still recognised."""
    model = WebhookDelivery
    cutoff = utcnow() - timedelta(days=retention_days)
    purged = session.execute(
        update(model)
        .where(model.status.in_((PROCESSED, IGNORED)), model.finished_at < cutoff, model.payload.is_not(None))
        .values(payload=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(purged, "rowcount", 0) or 0)


def retry(session: Session, delivery_id: int) -> bool:
    """Put a failed delivery back as pending with its attempts reset; False if it is not a failed one, or its
    payload is gone."""
    model = WebhookDelivery
    again = session.execute(
        update(model)
        .where(model.id == delivery_id, model.status == FAILED, model.payload.is_not(None))
        .values(status=PENDING, attempts=0, error=None, not_before=None, claimed_until=None, finished_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(again, "rowcount", 0))


def listed(session: Session, status: str | None, limit: int) -> list[WebhookDelivery]:
    """The newest deliveries, of one status or all."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query))
