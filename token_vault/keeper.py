"""Background refresh: renew tokens before they expire and touch idle grants, without hammering a provider that is down.

Beat calls `renew_due()` every `refresh_tick_seconds`. A connection is due when its access token expires within
`refresh_ahead_seconds`, or when it was last refreshed more than `touch_idle_hours` ago (providers expire refresh
tokens that go unused). A failed refresh is counted on the connection and waits a doubling cool-down; it never
changes the connection's status. Only a refused grant does (`needs_reauth`, set by `FreshTokens`). After a few
failures in a row at one provider, the rest of that provider's connections wait for the next tick.

A grant without a refresh token (the provider issues none) is never refreshed: once its access token has expired it
is marked for reconnecting, with no call to the provider. A credential without an expiry is never due.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from core import logs
from core.db import transaction
from core.errors import AuthRevoked
from core.logsafe import described
from core.models import Connection, ConnectionStatus, utcnow
from core.settings import VaultSettings
from token_vault.fresh import ACCESS, REFRESH, FreshTokens, Inactive
from token_vault.models import SealedCredential

log = logging.getLogger(__name__)

PROVIDER_FAILURES_PER_TICK = 3


@dataclass
class RenewReport:
    renewed: int = 0
    current: int = 0
    failed: int = 0
    revoked: int = 0
    deferred: int = 0
    providers_down: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "renewed": self.renewed,
            "current": self.current,
            "failed": self.failed,
            "revoked": self.revoked,
            "deferred": self.deferred,
            "providers_down": self.providers_down,
        }


@dataclass(frozen=True)
class Due:
    connection_id: uuid.UUID
    provider: str
    idle: bool  # not refreshed for `touch_idle_hours`: refresh even though the token is still valid


def due_connections(session: Session, settings: VaultSettings) -> list[Due]:
    """Active connections with a refresh token whose access token is missing, expires soon or sat idle too long;
    and those without one whose access token has expired."""
    now = utcnow()
    idle_since = now - timedelta(hours=settings.touch_idle_hours)
    access = select(SealedCredential.connection_id, SealedCredential.expires_at).where(SealedCredential.kind == ACCESS)
    access_sq = access.subquery()
    has_refresh = select(SealedCredential.id).where(
        SealedCredential.connection_id == Connection.id, SealedCredential.kind == REFRESH
    )
    expires = access_sq.c.expires_at
    renewable = and_(
        has_refresh.exists(),
        or_(
            access_sq.c.connection_id.is_(None),
            and_(
                expires.is_not(None),
                or_(
                    expires <= now + timedelta(seconds=settings.refresh_ahead_seconds),
                    Connection.refreshed_at.is_(None),
                    Connection.refreshed_at <= idle_since,
                ),
            ),
        ),
    )
    lapsed = and_(~has_refresh.exists(), expires <= now)
    rows = session.execute(
        select(Connection.id, Connection.auth_provider, Connection.refreshed_at)
        .outerjoin(access_sq, access_sq.c.connection_id == Connection.id)
        .where(
            Connection.status == ConnectionStatus.ACTIVE.value,
            or_(Connection.refresh_retry_at.is_(None), Connection.refresh_retry_at <= now),
            or_(renewable, lapsed),
        )
        .order_by(Connection.refresh_retry_at.nulls_first(), Connection.id)
    ).all()
    return [Due(row[0], row[1], row[2] is None or row[2] <= idle_since) for row in rows]


def renew_due(
    sessions: sessionmaker[Session], fresh: FreshTokens, settings: VaultSettings, budget_seconds: float = 60.0
) -> RenewReport:
    """Renew what is due, one connection at a time, until the budget is spent (the rest waits for the next tick)."""
    with sessions() as session:
        due = due_connections(session, settings)
    report = RenewReport()
    failures_in_a_row: Counter[str] = Counter()
    deadline = time.monotonic() + budget_seconds
    for item in due:
        connection_id, provider = item.connection_id, item.provider
        if time.monotonic() > deadline or failures_in_a_row[provider] >= PROVIDER_FAILURES_PER_TICK:
            report.deferred += 1
            continue
        with logs.bind(connection_id=str(connection_id), provider=provider):
            _renew_one(sessions, fresh, settings, item, report, failures_in_a_row)
    return report


def _renew_one(
    sessions: sessionmaker[Session],
    fresh: FreshTokens,
    settings: VaultSettings,
    item: Due,
    report: RenewReport,
    failures_in_a_row: Counter[str],
) -> None:
    """Renew one due connection's token, counting the outcome in `report`."""
    connection_id, provider = item.connection_id, item.provider
    # An idle grant is refreshed whatever its token's lifetime; others only when expiring within the look-ahead.
    ahead = (
        timedelta(hours=settings.touch_idle_hours * 2)
        if item.idle
        else timedelta(seconds=settings.refresh_ahead_seconds)
    )
    try:
        renewed = fresh.renew(connection_id, ahead)
    except AuthRevoked:  # refused, or lapsed without a refresh token: FreshTokens marked it for reconnecting
        report.revoked += 1
        failures_in_a_row[provider] = 0
        return
    except Inactive:  # paused or disconnected since it was picked: nothing to do
        return
    except Exception as exc:
        _cool_down(sessions, connection_id, settings, exc)
        report.failed += 1
        failures_in_a_row[provider] += 1
        if failures_in_a_row[provider] == PROVIDER_FAILURES_PER_TICK:
            report.providers_down.append(provider)
        return
    failures_in_a_row[provider] = 0
    if renewed:
        report.renewed += 1
    else:
        report.current += 1
        _touched(sessions, connection_id)


def _touched(sessions: sessionmaker[Session], connection_id: uuid.UUID) -> None:
    with transaction(sessions) as session:
        connection = session.get_one(Connection, connection_id)
        connection.refresh_failures, connection.refresh_retry_at = 0, None


def _cool_down(
    sessions: sessionmaker[Session], connection_id: uuid.UUID, settings: VaultSettings, exc: Exception
) -> None:
    with transaction(sessions) as session:
        connection = session.get_one(Connection, connection_id)
        connection.refresh_failures += 1
        wait = min(
            settings.refresh_cooldown_max_seconds,
            settings.refresh_cooldown_seconds * 2 ** (connection.refresh_failures - 1),
        )
        connection.refresh_retry_at = utcnow() + timedelta(seconds=wait)
        log.warning(
            "background refresh failed; cooling down: %s",
            described(exc),
            extra={"connection_id": str(connection_id), "failures": connection.refresh_failures},
        )
