"""The privacy policy's retention promise: data of a disconnected connection is erased after the retention period,
and the tombstones the change feed shows of deleted records expire after it.

What is erased is read from the holdings registry: every row any table holds for the connection, then the
connection itself; the audit entry that says so holds ids and counts only."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import Base, transaction
from core.holdings import Role, erase_connection
from core.models import Connection, ConnectionStatus, audit, utcnow
from crm.models import TombstoneRow

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


def expire_tombstones(sessions: sessionmaker[Session], retention_days: int) -> int:
    """Delete the tombstones of records deleted longer than the retention period ago; returns how many."""
    cutoff = utcnow() - timedelta(days=retention_days)
    with transaction(sessions) as session:
        result = session.execute(delete(TombstoneRow).where(TombstoneRow.deleted_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)
