"""Push channels the hub keeps open at providers (a calendar's watch): stored with their secret token
hashed, checked in constant time when a notification names one, and renewed before they expire by beat (the new
channel opened before the old one is stopped)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import OpenChannel, Resource
from core.db import transaction
from core.logsafe import described
from core.models import Connection, ConnectionStatus, utcnow
from core.settings import Settings
from sync.models import ConnectionResource, PushChannel

if TYPE_CHECKING:
    from sync.engine import SyncEngine

log = logging.getLogger(__name__)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def address(settings: Settings, slug: str, allow_http: bool) -> str | None:
    """Where a provider is to POST notifications, or None when the hub cannot take them (an http public URL,
    unless the connector's dev setting allows it): the resource is then polled only."""
    base = settings.public_url.rstrip("/")
    if base.startswith("https://") or (allow_http and base.startswith("http://")):
        return f"{base}/webhooks/{slug}"
    return None


@dataclass
class ChannelStore:
    """The channels of one (connection, capability, resource), as a connector's lifecycle sees them."""

    sessions: sessionmaker[Session]
    connection_id: uuid.UUID
    capability: str
    resource: Resource
    address: str

    def new(self) -> tuple[str, str]:
        return str(uuid.uuid4()), secrets.token_urlsafe(32)

    def _row(self, session: Session) -> ConnectionResource | None:
        return session.scalar(
            select(ConnectionResource).where(
                ConnectionResource.connection_id == self.connection_id,
                ConnectionResource.capability == self.capability,
                ConnectionResource.external_id == self.resource.external_id,
            )
        )

    def opened(
        self, channel_id: str, token: str, provider_resource_id: str | None, expires_at: datetime | None
    ) -> None:
        with transaction(self.sessions) as session:
            row = self._row(session)
            session.add(
                PushChannel(
                    id=channel_id,
                    connection_id=self.connection_id,
                    capability=self.capability,
                    resource=row.key if row is not None else "",
                    external_id=self.resource.external_id,
                    token_hash=token_hash(token),
                    provider_resource_id=provider_resource_id,
                    expires_at=expires_at,
                )
            )

    def live(self) -> list[OpenChannel]:
        with self.sessions() as session:
            rows = session.scalars(
                select(PushChannel)
                .where(
                    PushChannel.connection_id == self.connection_id,
                    PushChannel.capability == self.capability,
                    PushChannel.external_id == self.resource.external_id,
                    PushChannel.stopped_at.is_(None),
                )
                .order_by(PushChannel.created_at)
            ).all()
            return [OpenChannel(row.id, row.provider_resource_id, row.expires_at) for row in rows]

    def stopped(self, channel_id: str) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                update(PushChannel)
                .where(PushChannel.id == channel_id, PushChannel.stopped_at.is_(None))
                .values(stopped_at=utcnow())
            )


class Check(StrEnum):
    LIVE = "live"
    UNKNOWN = "unknown"  # no such channel, or stopped: answered 200 and recorded as ignored
    FORGED = "forged"  # a live channel named with the wrong token: refused


@dataclass(frozen=True)
class Checked:
    outcome: Check
    route_key: str = ""


def check(session: Session, channel_id: str, token: str) -> Checked:
    """Whether a notification's channel is live and its token the one kept (compared as hashes, in constant
    time)."""
    row = session.get(PushChannel, channel_id)
    if row is None or row.stopped_at is not None:
        return Checked(Check.UNKNOWN)
    if not hmac.compare_digest(row.token_hash, token_hash(token)):
        return Checked(Check.FORGED)
    return Checked(Check.LIVE, row.external_id)


def live_channel(session: Session, connection_id: uuid.UUID, capability: str, resource: str) -> bool:
    """Whether a stream has a live push channel (its polling can then be less frequent)."""
    return (
        session.scalar(
            select(PushChannel.id)
            .where(
                PushChannel.connection_id == connection_id,
                PushChannel.capability == capability,
                PushChannel.resource == resource,
                PushChannel.stopped_at.is_(None),
                PushChannel.expires_at > utcnow(),
            )
            .limit(1)
        )
        is not None
    )


def renew_due(engine: SyncEngine) -> dict[str, int]:
    """Renew each live channel that expires within its connector's renewal margin: a new channel is opened first,
    then the old one stopped, so notifications never lapse. A channel whose resource is no longer selected is
    stopped instead."""
    renewed = stopped = failed = 0
    now = utcnow()
    with engine.sessions() as session:
        rows = session.execute(
            select(PushChannel, Connection, ConnectionResource)
            .join(Connection, Connection.id == PushChannel.connection_id)
            .outerjoin(
                ConnectionResource,
                (ConnectionResource.connection_id == PushChannel.connection_id)
                & (ConnectionResource.capability == PushChannel.capability)
                & (ConnectionResource.external_id == PushChannel.external_id),
            )
            .where(PushChannel.stopped_at.is_(None), Connection.status == ConnectionStatus.ACTIVE.value)
            .order_by(PushChannel.expires_at)
        ).all()
        session.expunge_all()
    for channel, connection, resource in rows:
        found = engine.capability(connection, channel.capability)
        if found is None or found[1].lifecycle is None:
            continue
        spec, capability = found
        margin = int(getattr(engine.context(connection, spec).settings, "channel_renew_before_seconds", 86400))
        if channel.expires_at is not None and channel.expires_at > now + timedelta(seconds=margin):
            continue
        chosen = Resource(
            channel.external_id, resource.display_name if resource else "", resource.detail if resource else {}
        )
        ctx = engine.context(connection, spec, chosen)
        if ctx.channels is None:
            continue
        lifecycle = capability.lifecycle
        try:
            if resource is not None and resource.selected and resource.gone_at is None:
                renew = getattr(lifecycle, "renew", None)
                if renew is None:
                    continue
                renew(ctx, OpenChannel(channel.id, channel.provider_resource_id, channel.expires_at))
                renewed += 1
            else:
                stop = getattr(lifecycle, "stop", None)
                if stop is not None:
                    stop(ctx, OpenChannel(channel.id, channel.provider_resource_id, channel.expires_at))
                stopped += 1
        except Exception as exc:
            failed += 1
            log.warning(
                "renewing a push channel failed: %s",
                described(exc),
                extra={"connection_id": str(connection.id), "error_type": type(exc).__name__},
            )
    return {"renewed": renewed, "stopped": stopped, "failed": failed}
