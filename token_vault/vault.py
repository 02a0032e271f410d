"""The vault's storage side: store and read sealed credentials, and check the ring covers every row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Connection
from core.settings import VaultSettings
from token_vault.models import SealedCredential
from token_vault.sealing import Binding, KeyRing


class MissingKeys(Exception):
    """Stored credentials name key ids the ring does not have."""


@dataclass(frozen=True)
class Secret:
    value: str
    expires_at: datetime | None


def key_ring(settings: VaultSettings) -> KeyRing:
    return KeyRing(settings.ring(), settings.active_key_id)


class Vault:
    """Seal on write, open on read; a ciphertext opens only in the row it was written for."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    @staticmethod
    def _binding(connection: Connection, kind: str) -> Binding:
        return Binding(connection.workspace_id, str(connection.id), kind)

    def store(
        self,
        session: Session,
        connection: Connection,
        kind: str,
        value: str,
        expires_at: datetime | None = None,
    ) -> SealedCredential:
        """Seal and upsert one credential of a connection in the caller's transaction."""
        sealed = self.ring.seal(value.encode(), self._binding(connection, kind))
        row = session.scalar(
            select(SealedCredential).where(
                SealedCredential.connection_id == connection.id, SealedCredential.kind == kind
            )
        )
        if row is None:
            row = SealedCredential(
                connection_id=connection.id, kind=kind, key_id=self.ring.active_key_id, sealed=sealed
            )
            session.add(row)
        else:
            row.sealed, row.key_id, row.version = sealed, self.ring.active_key_id, row.version + 1
        row.expires_at = expires_at
        session.flush()
        return row

    def read(self, session: Session, connection: Connection, kind: str) -> Secret | None:
        row = session.scalar(
            select(SealedCredential).where(
                SealedCredential.connection_id == connection.id, SealedCredential.kind == kind
            )
        )
        if row is None:
            return None
        return Secret(self.ring.open(row.sealed, self._binding(connection, kind)).decode(), row.expires_at)

    def erase(self, session: Session, connection_id: uuid.UUID) -> int:
        rows = session.scalars(select(SealedCredential).where(SealedCredential.connection_id == connection_id)).all()
        for row in rows:
            session.delete(row)
        return len(rows)


def check_key_ids(session: Session, ring: KeyRing) -> None:
    """Refuse to start when a stored credential names a key id that is not in the ring."""
    counts = session.execute(select(SealedCredential.key_id, func.count()).group_by(SealedCredential.key_id)).all()
    missing = {key_id: count for key_id, count in counts if key_id not in ring.key_ids}
    if missing:
        listed = ", ".join(f"key id {key_id} ({count} credentials)" for key_id, count in sorted(missing.items()))
        raise MissingKeys(f"SYNCHUB_VAULT__KEYS lacks keys that stored credentials were sealed with: {listed}")
