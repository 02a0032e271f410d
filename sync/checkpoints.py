"""Checkpoints: the stream cursor and the full pass in progress, sealed because they hold provider tokens."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.models import Connection
from sync.models import Checkpoint
from token_vault.sealing import Binding, KeyRing
from token_vault.vault import checkpoint_binding


@dataclass(frozen=True)
class Position:
    """Where a stream resumes: its cursor (empty = full pass), the id stamping rows seen in a full pass, and how
    many items of the pass in progress are committed (its progress, whichever run resumes it)."""

    cursor: dict[str, Any] = field(default_factory=dict)
    full_pass_id: str | None = None
    done: int = 0

    @property
    def in_full_pass(self) -> bool:
        """A full pass starts here (no cursor) or is under way (a full pass id is kept until its last page)."""
        return not self.cursor or self.full_pass_id is not None

    @property
    def starts_full_pass(self) -> bool:
        """Nothing of a pass is committed yet and there is no cursor: the next page begins a new full pass."""
        return not self.cursor and self.full_pass_id is None and self.done == 0


def stream_key(capability: str, resource: str) -> str:
    """A stream's name: its capability, or `capability/<resource id>` for one resource of it."""
    return f"{capability}/{resource}" if resource else capability


def _binding(connection: Connection, stream: str) -> Binding:
    return checkpoint_binding(connection.workspace_id, connection.id, stream)


def load(session: Session, ring: KeyRing, connection: Connection, stream: str) -> Position:
    row = session.get(Checkpoint, (connection.id, stream))
    if row is None:
        return Position()
    return Position(**json.loads(ring.open(row.sealed, _binding(connection, stream))))


def save(session: Session, ring: KeyRing, connection: Connection, stream: str, position: Position) -> None:
    sealed = ring.seal(json.dumps(asdict(position)).encode(), _binding(connection, stream))
    row = session.get(Checkpoint, (connection.id, stream))
    if row is None:
        session.add(Checkpoint(connection_id=connection.id, stream=stream, sealed=sealed, key_id=ring.active_key_id))
    else:
        row.sealed, row.key_id = sealed, ring.active_key_id


def clear(session: Session, connection: Connection, stream: str) -> None:
    session.execute(delete(Checkpoint).where(Checkpoint.connection_id == connection.id, Checkpoint.stream == stream))
