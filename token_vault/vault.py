"""The vault's storage side: store and read sealed credentials, and check the ring covers every row."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import LargeBinary, SmallInteger, String, Uuid, column, func, select, table
from sqlalchemy.orm import Session

from core.models import Connection
from core.settings import VaultSettings
from token_vault.models import KIND_LENGTH, SealedCredential
from token_vault.sealing import Binding, KeyRing

CHECKPOINTS = table(
    "checkpoints",
    column("connection_id", Uuid()),
    column("stream", String()),
    column("key_id", SmallInteger()),
    column("sealed", LargeBinary()),
)
"""sync/'s sealed checkpoints, named by the columns the vault reads and re-seals (token_vault never imports sync)."""


SECRET_PREFIX = "secret:"  # noqa: S105 (a kind's prefix, not a password)
SECRET_NAME = re.compile(rf"[\x21-\x7e]{{1,{KIND_LENGTH - len(SECRET_PREFIX)}}}")


def secret_kind(name: str) -> str:
    """The credentials row of a named secret (`password`, `page:<id>`): kind `secret:<name>`, which its
    ciphertext is bound to like a token to its kind. Names are printable ASCII without spaces."""
    if not SECRET_NAME.fullmatch(name):
        raise ValueError(
            f"a secret's name is 1 to {KIND_LENGTH - len(SECRET_PREFIX)} printable characters without spaces"
        )
    return SECRET_PREFIX + name


class MissingKeys(Exception):
    """Stored credentials or checkpoints name key ids the ring does not have."""


@dataclass(frozen=True)
class Secret:
    value: str
    expires_at: datetime | None


def key_ring(settings: VaultSettings) -> KeyRing:
    return KeyRing(settings.ring(), settings.active_key_id)


def credential_binding(workspace_id: str, connection_id: uuid.UUID, kind: str) -> Binding:
    return Binding(workspace_id, str(connection_id), kind)


def checkpoint_binding(workspace_id: str, connection_id: uuid.UUID, stream: str) -> Binding:
    return Binding(workspace_id, str(connection_id), f"checkpoint:{stream}")


class Vault:
    """Seal on write, open on read; a ciphertext opens only in the row it was written for."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    @staticmethod
    def _binding(connection: Connection, kind: str) -> Binding:
        return credential_binding(connection.workspace_id, connection.id, kind)

    def store(
        self,
        session: Session,
        connection: Connection,
        kind: str,
        value: str,
        expires_at: datetime | None = None,
    ) -> SealedCredential:
        """Seal and upsert one credential of a connection in the caller's transaction.

        `version` goes up in SQL, so a rotation's compare-and-swap sees every write, even one based on a stale read.
        """
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
            row.sealed, row.key_id, row.version = sealed, self.ring.active_key_id, SealedCredential.version + 1
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


def key_counts(session: Session) -> dict[str, dict[int, int]]:
    """Rows per key id, by table (`credentials`, `checkpoints`)."""
    columns = {"credentials": SealedCredential.key_id, "checkpoints": CHECKPOINTS.c.key_id}
    return {
        name: {key_id: count for key_id, count in session.execute(select(key_id, func.count()).group_by(key_id))}
        for name, key_id in columns.items()
    }


def counted(count: int, table: str) -> str:
    """`1 credential`, `3 checkpoints`: a count of rows of a sealed table."""
    return f"{count} {table if count != 1 else table.removesuffix('s')}"


def check_key_ids(session: Session, ring: KeyRing) -> None:
    """Refuse to start when a stored credential or checkpoint names a key id that is not in the ring."""
    missing: dict[int, list[str]] = {}
    for table_name, counts in key_counts(session).items():
        for key_id, count in sorted(counts.items()):
            if key_id not in ring.key_ids:
                missing.setdefault(key_id, []).append(counted(count, table_name))
    if missing:
        listed = ", ".join(f"key id {key_id} ({', '.join(rows)})" for key_id, rows in sorted(missing.items()))
        raise MissingKeys(
            f"SYNCHUB_VAULT__KEYS lacks keys that stored credentials or checkpoints were sealed with: {listed}"
        )
