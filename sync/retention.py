"""The privacy policy's retention promise: data of a disconnected connection is erased after the retention period."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Connection, ConnectionStatus, audit, utcnow


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
            audit(session, connection, "system", "connection.erased_by_retention", retention_days=retention_days)
            session.delete(connection)
        return len(expired)
