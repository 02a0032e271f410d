"""Key rotation: re-seal every credential and checkpoint under the active key while syncs keep running.

Each row is re-sealed in its own short transaction by a compare-and-swap: credentials on their `version`,
checkpoints on their sealed bytes. A row written meanwhile (a refresh, a sync's page) fails the swap and is
re-read, so a newer value is never overwritten by the older one rotation read. Rows are read in batches by key,
so memory stays flat however many there are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, Update, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Connection
from token_vault.models import SealedCredential
from token_vault.sealing import Binding, KeyRing, SealError
from token_vault.vault import CHECKPOINTS, checkpoint_binding, credential_binding, key_counts

log = logging.getLogger(__name__)

BATCH = 500
ATTEMPTS = 5


@dataclass(frozen=True)
class SealedRow:
    """One sealed value as rotation read it: its primary key, what it is bound to, and what the swap compares."""

    key: tuple[Any, ...]
    binding: Binding
    key_id: int
    sealed: bytes
    version: int | None = None


@dataclass(frozen=True)
class SealedTable:
    """How rotation pages through, re-reads and compare-and-swaps the rows of one sealed table."""

    name: str
    key_id: SQLColumnExpression[int]
    rows: Callable[[Session, Sequence[ColumnElement[bool]], int], list[SealedRow]]
    after: Callable[[SealedRow], ColumnElement[bool]]
    same: Callable[[SealedRow], ColumnElement[bool]]
    swap: Callable[[SealedRow, bytes, int], Update]


def _credential_rows(session: Session, where: Sequence[ColumnElement[bool]], limit: int) -> list[SealedRow]:
    query = (
        select(
            SealedCredential.id,
            SealedCredential.connection_id,
            SealedCredential.kind,
            SealedCredential.key_id,
            SealedCredential.sealed,
            SealedCredential.version,
            Connection.workspace_id,
        )
        .join(Connection, Connection.id == SealedCredential.connection_id)
        .where(*where)
        .order_by(SealedCredential.id)
        .limit(limit)
    )
    return [
        SealedRow((r.id,), credential_binding(r.workspace_id, r.connection_id, r.kind), r.key_id, r.sealed, r.version)
        for r in session.execute(query)
    ]


def _checkpoint_rows(session: Session, where: Sequence[ColumnElement[bool]], limit: int) -> list[SealedRow]:
    c = CHECKPOINTS.c
    query = (
        select(c.connection_id, c.stream, c.key_id, c.sealed, Connection.workspace_id)
        .join(Connection, Connection.id == c.connection_id)
        .where(*where)
        .order_by(c.connection_id, c.stream)
        .limit(limit)
    )
    return [
        SealedRow(
            (r.connection_id, r.stream),
            checkpoint_binding(r.workspace_id, r.connection_id, r.stream),
            r.key_id,
            r.sealed,
        )
        for r in session.execute(query)
    ]


def _checkpoint_after(row: SealedRow) -> ColumnElement[bool]:
    connection_id, stream = row.key
    c = CHECKPOINTS.c
    return or_(c.connection_id > connection_id, and_(c.connection_id == connection_id, c.stream > stream))


def _checkpoint_same(row: SealedRow) -> ColumnElement[bool]:
    return and_(CHECKPOINTS.c.connection_id == row.key[0], CHECKPOINTS.c.stream == row.key[1])


CREDENTIALS_TABLE = SealedTable(
    name="credentials",
    key_id=SealedCredential.key_id,
    rows=_credential_rows,
    after=lambda row: SealedCredential.id > row.key[0],
    same=lambda row: SealedCredential.id == row.key[0],
    swap=lambda row, sealed, key_id: (
        update(SealedCredential)
        .where(SealedCredential.id == row.key[0], SealedCredential.version == row.version)
        .values(sealed=sealed, key_id=key_id, version=SealedCredential.version + 1)
    ),
)
CHECKPOINTS_TABLE = SealedTable(
    name="checkpoints",
    key_id=CHECKPOINTS.c.key_id,
    rows=_checkpoint_rows,
    after=_checkpoint_after,
    same=_checkpoint_same,
    swap=lambda row, sealed, key_id: (
        update(CHECKPOINTS)
        .where(_checkpoint_same(row), CHECKPOINTS.c.sealed == row.sealed)
        .values(sealed=sealed, key_id=key_id)
    ),
)
TABLES = (CREDENTIALS_TABLE, CHECKPOINTS_TABLE)
TABLE_NAMES = tuple(table.name for table in TABLES)


@dataclass
class RotationReport:
    """What a rotation did; rows that do not open or kept changing are left as they were, and counted."""

    resealed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLE_NAMES, 0))
    retried: int = 0
    current: int = 0
    unopened: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLE_NAMES, 0))
    contended: int = 0

    @property
    def complete(self) -> bool:
        return not any(self.unopened.values()) and not self.contended


@dataclass(frozen=True)
class TableStatus:
    name: str
    by_key: dict[int, int]
    rows: int
    unopened: int


@dataclass(frozen=True)
class VaultStatus:
    """Rows per key id and how many fail to open with the ring, per sealed table."""

    key_ids: frozenset[int]
    active_key_id: int
    tables: tuple[TableStatus, ...]

    @property
    def missing_keys(self) -> dict[int, dict[str, int]]:
        """Key ids that rows name but the ring lacks: rows per table."""
        missing: dict[int, dict[str, int]] = {}
        for table in self.tables:
            for key_id, count in table.by_key.items():
                if key_id not in self.key_ids:
                    missing.setdefault(key_id, {})[table.name] = count
        return missing

    @property
    def healthy(self) -> bool:
        return not self.missing_keys and not any(table.unopened for table in self.tables)


def rotate(sessions: sessionmaker[Session], ring: KeyRing) -> RotationReport:
    """Re-seal every credential and checkpoint not on the ring's active key under it."""
    report = RotationReport()
    with sessions() as session:
        report.current = sum(counts.get(ring.active_key_id, 0) for counts in key_counts(session).values())
    for table in TABLES:
        for batch in _batches(sessions, table, [table.key_id != ring.active_key_id]):
            for row in batch:
                _reseal(sessions, ring, table, row, report)
    log.info(
        "vault rotated",
        extra={
            "active_key_id": ring.active_key_id,
            "resealed": report.resealed,
            "retried": report.retried,
            "unopened": report.unopened,
            "contended": report.contended,
        },
    )
    return report


def status(sessions: sessionmaker[Session], ring: KeyRing) -> VaultStatus:
    """Count rows per key id and try to open every one of them with `ring`."""
    with sessions() as session:
        counts = key_counts(session)
    tables = []
    for table in TABLES:
        rows = unopened = 0
        for batch in _batches(sessions, table, []):
            rows += len(batch)
            unopened += sum(not _opens(ring, row) for row in batch)
        tables.append(TableStatus(table.name, counts[table.name], rows, unopened))
    return VaultStatus(ring.key_ids, ring.active_key_id, tuple(tables))


def _opens(ring: KeyRing, row: SealedRow) -> bool:
    try:
        ring.open(row.sealed, row.binding)
    except SealError:
        return False
    return True


def _batches(
    sessions: sessionmaker[Session], table: SealedTable, where: Sequence[ColumnElement[bool]]
) -> Iterator[list[SealedRow]]:
    last: SealedRow | None = None
    while True:
        with sessions() as session:
            batch = table.rows(session, [*where, *([table.after(last)] if last else [])], BATCH)
        if batch:
            yield batch
        if len(batch) < BATCH:
            return
        last = batch[-1]


def _reseal(
    sessions: sessionmaker[Session], ring: KeyRing, table: SealedTable, row: SealedRow, report: RotationReport
) -> None:
    """Swap in `row` re-sealed under the active key; when the row changed since it was read, read it again."""
    for _ in range(ATTEMPTS):
        if row.key_id == ring.active_key_id:
            report.current += 1
            return
        try:
            plaintext = ring.open(row.sealed, row.binding)
        except SealError:
            report.unopened[table.name] += 1
            return
        with transaction(sessions) as session:
            swapped = session.connection().execute(
                table.swap(row, ring.seal(plaintext, row.binding), ring.active_key_id)
            )
        if swapped.rowcount == 1:
            report.resealed[table.name] += 1
            return
        report.retried += 1
        with sessions() as session:
            again = table.rows(session, [table.same(row)], 1)
        if not again:
            return
        row = again[0]
    report.contended += 1
