"""The Connection model (one account at one auth provider), its status transitions, and the audit log."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from core.db import Base
from core.holdings import Owner, Role, holding

PRINCIPAL_ID_LENGTH = 64
"""The longest user or workspace id the tables keep (the CRM's `sub` and `workspace_id`)."""
ACCOUNT_ID_LENGTH = 255
"""The longest provider account id a connection keeps."""
EMAIL_LENGTH = 320


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes: a naive one is refused rather than guessed at."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(UTC) if value is not None else None


class ConnectionStatus(enum.StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    PAUSED = "paused"
    DISCONNECTED = "disconnected"


ALLOWED_TRANSITIONS: dict[ConnectionStatus, frozenset[ConnectionStatus]] = {
    ConnectionStatus.ACTIVE: frozenset(
        {ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.PAUSED, ConnectionStatus.DISCONNECTED}
    ),
    ConnectionStatus.NEEDS_REAUTH: frozenset({ConnectionStatus.ACTIVE, ConnectionStatus.DISCONNECTED}),
    ConnectionStatus.PAUSED: frozenset(
        {ConnectionStatus.ACTIVE, ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.DISCONNECTED}
    ),
    ConnectionStatus.DISCONNECTED: frozenset({ConnectionStatus.ACTIVE}),
}


class Sharing(enum.StrEnum):
    """Who reads a connection's records: its owner only, or everyone in its workspace. Reading only: the
    connection's controls stay its owner's."""

    OWNER = "owner"
    WORKSPACE = "workspace"


class InvalidTransition(Exception):
    """A connection was asked to move to a status it cannot reach from where it is."""


class Connection(Base):
    """One account at one auth provider, for one user of one workspace."""

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("workspace_id", "user_id", "auth_provider", "provider_account_id"),
        Index("ix_connections_workspace_user", "workspace_id", "user_id"),
        holding(Owner.CONNECTION, Role.HISTORY, key="id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[str] = mapped_column(String(PRINCIPAL_ID_LENGTH))
    user_id: Mapped[str] = mapped_column(String(PRINCIPAL_ID_LENGTH))
    auth_provider: Mapped[str] = mapped_column(String(32))
    provider_account_id: Mapped[str] = mapped_column(String(ACCOUNT_ID_LENGTH))
    account_email: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH))
    status: Mapped[str] = mapped_column(String(16), default=ConnectionStatus.ACTIVE.value)
    status_reason: Mapped[str | None] = mapped_column(Text)
    granted_scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    sharing: Mapped[str] = mapped_column(String(16), default=Sharing.OWNER.value, server_default=Sharing.OWNER.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    refresh_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def move_to(self, status: ConnectionStatus, reason: str | None = None) -> None:
        """Change status along an allowed transition, recording the reason shown to the user."""
        current = ConnectionStatus(self.status)
        if status == current:
            self.status_reason = reason
            return
        if status not in ALLOWED_TRANSITIONS[current]:
            raise InvalidTransition(f"a connection cannot go from {current} to {status}")
        self.status = status.value
        self.status_reason = reason
        self.disconnected_at = utcnow() if status == ConnectionStatus.DISCONNECTED else None


def readable(workspace_id: str, user_id: str) -> Select[uuid.UUID]:
    """The ids of the connections whose records a user may read: their own in their workspace, and those its
    owners share with the workspace. Every read of records, and every join made at read time, goes through it."""
    return select(Connection.id).where(
        Connection.workspace_id == workspace_id,
        or_(Connection.user_id == user_id, Connection.sharing == Sharing.WORKSPACE.value),
    )


class AuditEvent(Base):
    """Who did what, when: ids and counts only, never secrets or record contents. A frequent routine action
    (a token refresh) is one row per connection per day (`day`), counted in `times`."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_workspace_at", "workspace_id", "at"),
        Index("ix_audit_log_connection_at", "connection_id", "at"),
        Index(
            "uq_audit_log_daily",
            "connection_id",
            "action",
            "day",
            unique=True,
            postgresql_where=text("day IS NOT NULL"),
        ),
        holding(Owner.WORKSPACE, Role.AUDIT, key="workspace_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    workspace_id: Mapped[str] = mapped_column(String(PRINCIPAL_ID_LENGTH))
    actor: Mapped[str] = mapped_column(String(PRINCIPAL_ID_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    day: Mapped[date | None] = mapped_column(Date)
    times: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


def audit(session: Session, connection: Connection, actor: str, action: str, **detail: Any) -> None:
    """Record who did what to a connection; `detail` holds ids and counts, never secrets or contents."""
    audit_workspace(session, connection.workspace_id, actor, action, connection.id, **detail)


def audit_workspace(
    session: Session, workspace_id: str, actor: str, action: str, connection_id: uuid.UUID | None = None, **detail: Any
) -> None:
    """Record who did what in a workspace, to a connection or not (a user's own actions, such as forgetting
    them); `detail` holds ids and counts, never secrets or contents."""
    session.add(
        AuditEvent(workspace_id=workspace_id, actor=actor, action=action, connection_id=connection_id, detail=detail)
    )


def audit_daily(session: Session, connection: Connection, actor: str, action: str) -> None:
    """Count a routine action (a token refresh) on the connection's one row for today (UTC), made on the first."""
    now = utcnow()
    table: Table = AuditEvent.__table__  # type: ignore[assignment]
    row = {
        "id": uuid.uuid4(),
        "at": now,
        "workspace_id": connection.workspace_id,
        "actor": actor,
        "action": action,
        "connection_id": connection.id,
        "detail": {},
        "day": now.date(),
        "times": 1,
    }
    upsert = pg_insert(table).values(row)
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=["connection_id", "action", "day"],
            index_where=text("day IS NOT NULL"),
            set_={"times": table.c.times + 1},
        )
    )


def audit_grant_change(session: Session, connection: Connection, actor: str, before: set[str]) -> None:
    """Record the scopes a new grant added or a provider withdrew (declined), when the granted set changed."""
    after = set(connection.granted_scopes)
    if after != before:
        audit(
            session,
            connection,
            actor,
            "connection.grant_changed",
            granted=sorted(after - before),
            declined=sorted(before - after),
        )
