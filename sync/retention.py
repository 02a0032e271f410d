"""The privacy policy's retention promise: data of a disconnected connection, and of a cancelled workspace, is
erased after the retention period (a cancellation can be reversed until then), and the tombstones the change feed
shows of deleted records expire after it.

What is erased is read from the holdings registry: every row any table holds for the connection, then the
connection itself; the audit entry that says so holds ids and counts only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.db import Base, transaction
from core.holdings import Owner, Role, declared, erase_connection, holding
from core.models import (
    PRINCIPAL_ID_LENGTH,
    Connection,
    ConnectionStatus,
    UTCDateTime,
    audit,
    audit_workspace,
    utcnow,
)
from crm.models import TombstoneRow
from sync.erasure import erase_one
from token_vault.sealing import KeyRing

ERASED_WITH_CONNECTION = {Role.RECORDS, Role.SECRET, Role.SCRATCH, Role.HISTORY}


def enforce_retention(sessions: sessionmaker[Session], retention_days: int) -> int:
    """Erase every connection disconnected longer than the retention period; returns how many."""
    cutoff = utcnow() - timedelta(days=retention_days)
    with transaction(sessions) as session:
        expired = session.scalars(
            select(Connection).where(
                Connection.status == ConnectionStatus.DISCONNECTED.value, Connection.disconnected_at < cutoff
            )
        ).all()
        for connection in expired:
            erased = erase_connection(session, Base.metadata, connection.id, ERASED_WITH_CONNECTION)
            audit(
                session,
                connection,
                "system",
                "connection.erased_by_retention",
                retention_days=retention_days,
                rows_erased=sum(erased.values()) + 1,
            )
            session.delete(connection)
        return len(expired)


CANCELLED_REASON = "the workspace is cancelled: its data is deleted when the retention period ends"


class WorkspaceCancellation(Base):
    """A cancelled workspace: its retention clock runs from `cancelled_at`; reactivating it deletes the row."""

    __tablename__ = "workspace_cancellations"
    __table_args__ = (holding(Owner.WORKSPACE, Role.HISTORY, key="workspace_id"),)

    workspace_id: Mapped[str] = mapped_column(String(PRINCIPAL_ID_LENGTH), primary_key=True)
    cancelled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WindowEnded(Exception):
    """The cancellation's retention window has ended: it can no longer be reversed."""


def purge_at(cancellation: WorkspaceCancellation, retention_days: int) -> datetime:
    return cancellation.cancelled_at + timedelta(days=retention_days)


def cancelled(session: Session, workspace_id: str) -> WorkspaceCancellation | None:
    return session.get(WorkspaceCancellation, workspace_id)


def cancel_workspace(sessions: sessionmaker[Session], workspace_id: str, retention_days: int) -> dict[str, Any]:
    """Start the retention clock (cancelling again keeps the first clock) and pause every active connection of the
    workspace, so no new run starts while it is cancelled."""
    with transaction(sessions) as session:
        found = session.get(WorkspaceCancellation, workspace_id, with_for_update=True)
        if found is None:
            found = WorkspaceCancellation(workspace_id=workspace_id, cancelled_at=utcnow())
            session.add(found)
            audit_workspace(session, workspace_id, "service", "workspace.cancelled", retention_days=retention_days)
        paused = 0
        for connection in session.scalars(
            select(Connection)
            .where(Connection.workspace_id == workspace_id, Connection.status == ConnectionStatus.ACTIVE.value)
            .with_for_update()
        ):
            connection.move_to(ConnectionStatus.PAUSED, CANCELLED_REASON)
            paused += 1
        session.flush()
        return {
            "workspace_id": workspace_id,
            "cancelled_at": found.cancelled_at.isoformat(),
            "data_deleted_after": purge_at(found, retention_days).isoformat(),
            "connections_paused": paused,
        }


def reactivate_workspace(sessions: sessionmaker[Session], workspace_id: str, retention_days: int) -> dict[str, Any]:
    """Reverse a cancellation inside its window: the clock stops and the connections it paused are active again
    (the schedule syncs them from their checkpoints). LookupError if it is not cancelled; WindowEnded after."""
    with transaction(sessions) as session:
        found = session.get(WorkspaceCancellation, workspace_id, with_for_update=True)
        if found is None:
            raise LookupError(f"workspace {workspace_id} is not cancelled")
        if purge_at(found, retention_days) <= utcnow():
            raise WindowEnded("the retention period has ended: the workspace's data is being deleted")
        session.delete(found)
        resumed = 0
        for connection in session.scalars(
            select(Connection)
            .where(
                Connection.workspace_id == workspace_id,
                Connection.status == ConnectionStatus.PAUSED.value,
                Connection.status_reason == CANCELLED_REASON,
            )
            .with_for_update()
        ):
            connection.move_to(ConnectionStatus.ACTIVE)
            resumed += 1
        audit_workspace(session, workspace_id, "service", "workspace.reactivated", connections_resumed=resumed)
        return {"workspace_id": workspace_id, "cancelled": False, "connections_resumed": resumed}


def purge_cancelled_workspaces(
    engine: Any, ring: KeyRing, retention_days: int, now: datetime | None = None
) -> dict[str, int]:
    """Delete the data of every workspace cancelled longer than the retention period: each connection as an erase
    does it (provider undo's owed if a provider fails), then every row a table holds for the workspace. One audit
    entry is left in the workspace, counts only, saying so."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with engine.sessions() as session:
        due = list(
            session.scalars(
                select(WorkspaceCancellation.workspace_id).where(WorkspaceCancellation.cancelled_at <= cutoff)
            )
        )
    workspaces = rows = 0
    for workspace_id in due:
        with engine.sessions() as session:
            connection_ids = list(session.scalars(select(Connection.id).where(Connection.workspace_id == workspace_id)))
        pending = 0
        for connection_id in connection_ids:
            erased = erase_one(engine, ring, connection_id)
            if erased is not None:
                rows += erased.rows_deleted
                pending += erased.pending_id is not None
        with transaction(engine.sessions) as session:
            rows += erase_workspace_rows(session, workspace_id)
            audit_workspace(
                session,
                workspace_id,
                "system",
                "workspace.erased_by_retention",
                retention_days=retention_days,
                connections_erased=len(connection_ids),
                provider_undo_pending=pending,
            )
        workspaces += 1
    return {"workspaces_erased": workspaces, "rows_erased": rows}


def erase_workspace_rows(session: Session, workspace_id: str) -> int:
    """Delete every row that a workspace-owned table (the holdings registry's) holds for the workspace."""
    deleted = 0
    for name, found in declared(Base.metadata).items():
        if found.owner != Owner.WORKSPACE or found.key is None:
            continue
        table = Base.metadata.tables[name]
        result = session.execute(delete(table).where(table.c[found.key] == workspace_id))
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


def expire_tombstones(sessions: sessionmaker[Session], retention_days: int) -> int:
    """Delete the tombstones of records deleted longer than the retention period ago; returns how many."""
    cutoff = utcnow() - timedelta(days=retention_days)
    with transaction(sessions) as session:
        result = session.execute(delete(TombstoneRow).where(TombstoneRow.deleted_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)
