"""What every record kind's sink shares: provenance (whose rows, from which resource), page lookups by external id,
COPY inserts, the notes a full pass keeps of what it saw, and deletion by diff after a complete full pass.

Records are keyed by (connection, resource, external id) in every record table; each kind's module in `crm/`
writes its own columns with these.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import msgspec
from sqlalchemy import JSON, Select, Table, Text, bindparam, cast, delete, func, insert, or_, select, true
from sqlalchemy.orm import Session

from core.models import Connection
from crm.models import FullPassSeenRow

SEEN: Table = FullPassSeenRow.__table__  # type: ignore[assignment]
encode_json = msgspec.json.Encoder().encode


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    suppressed: int = 0
    """Records skipped because they carry an address on the workspace's suppression list (crm.suppression)."""

    def add(self, other: Counts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.deleted += other.deleted
        self.suppressed += other.suppressed


@dataclass(frozen=True)
class Owner:
    """Whose new rows a sink builds and from which resource (a `connection_resources` id, `''` for none), read
    once per run so rows can be built outside any session."""

    workspace_id: str
    connection_id: uuid.UUID
    provider: str
    resource: str = ""

    @classmethod
    def of(cls, connection: Connection, resource: str = "") -> Owner:
        return cls(connection.workspace_id, connection.id, connection.auth_provider, resource)


class Sink(Protocol):
    """Writes one page of one record kind for one (connection, resource), in the caller's transaction."""

    tables: ClassVar[tuple[Table, ...]]

    def __init__(self, session: Session, owner: Owner) -> None: ...

    @staticmethod
    def prepare(owner: Owner, records: Sequence[Any]) -> Any:
        """The page's records as new rows, built ahead on the reading thread; pure."""
        ...

    def apply(
        self,
        records: Sequence[Any],
        deleted_ids: Iterable[str],
        full_pass_id: str | None,
        ready: Any,
        fresh: bool = False,
    ) -> Counts:
        """Upsert a page and delete `deleted_ids`; `ready` is `prepare(records)` or None; `fresh`: the
        (connection, resource) held no record when this pass began, so the page may be tried as all new."""
        ...

    def delete_unseen(self, full_pass_id: str) -> int:
        """After a complete full pass: remove what it did not see, within this (connection, resource)."""
        ...


def rows_by_external_id(table: Table, owner: Owner, external_ids: Iterable[str], columns: Sequence[Any]) -> Select[Any]:
    """The (connection, resource)'s rows of `table` with these external ids, the ids sent as one JSON parameter.

    A page's 1,000 ids as 1,000 bound parameters made a 20 kB statement that psycopg re-parsed and SQLAlchemy
    re-rendered on every page, costing more than the query. Each id is one probe of the unique
    (connection, resource, external id) index through a LATERAL subquery (its LIMIT keeps the planner from
    flattening it): an `IN`/`ANY` over the JSON was planned from statistics that lag a bulk load, and filtered
    every row the connection had on every page.
    """
    document = bindparam("external_ids", encode_json(sorted(external_ids)).decode(), type_=Text)
    wanted = func.json_array_elements_text(cast(document, JSON)).table_valued("value").render_derived(name="wanted")
    found = (
        select(*columns)
        .where(
            table.c.connection_id == owner.connection_id,
            table.c.resource == owner.resource,
            table.c.external_id == wanted.c.value,
        )
        .limit(1)
        .lateral("found")
    )
    return select(found).select_from(wanted).join(found, true())


def random_uuids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, from one read of the OS's random source: `uuid.uuid4()` reads
    it once per id and, with `str()`, cost 6 µs an id, more than formatting the row it keys."""
    digits = os.urandom(16 * count).hex()
    return [
        f"{digits[i : i + 12]}4{digits[i + 13 : i + 16]}{'89ab'[int(digits[i + 16], 16) & 3]}{digits[i + 17 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def bulk_insert(session: Session, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert a page of rows given as tuples in `columns` order, JSON columns already encoded as text, with COPY
    in the session's transaction (psycopg formats the rows in C)."""
    if not rows:
        return
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _notes(table: Table, owner: Owner) -> tuple[Any, ...]:
    return (
        SEEN.c.connection_id == owner.connection_id,
        SEEN.c.resource == owner.resource,
        SEEN.c.record_table == table.name,
    )


def note_seen(session: Session, table: Table, owner: Owner, full_pass_id: str | None, external_ids: list[str]) -> None:
    """Note, for `delete_unseen`, the existing rows a full pass saw unchanged: one narrow row per page instead
    of an update of each (a stamp would rewrite every row a pass over unchanged data sees)."""
    if full_pass_id is None or not external_ids:
        return
    row = {
        "connection_id": owner.connection_id,
        "resource": owner.resource,
        "record_table": table.name,
        "pass_id": full_pass_id,
        "external_ids": external_ids,
    }
    session.execute(insert(SEEN).values(row))


def delete_unseen(session: Session, table: Table, owner: Owner, full_pass_id: str) -> int:
    """After a complete full pass: remove the (connection, resource)'s rows of `table` that pass did not see,
    that is neither written (stamped with its id) nor noted as seen unchanged; then forget what this and any
    abandoned full pass of these rows noted.

    `NOT IN`, not `NOT EXISTS`: PostgreSQL runs it as one hash of the noted ids whatever its estimates, while
    the anti-join it planned for `NOT EXISTS` from statistics taken before the pass's rows existed was a
    nested loop that unpacked every noted page once per row (4 s for 5,000 records). The hash is chosen
    while the noted ids are estimated to fit in `hash_mem` (8 MB by default), some 1.3 million of them.
    """
    notes = _notes(table, owner)
    noted = func.json_array_elements_text(SEEN.c.external_ids).table_valued("value").alias("noted")
    seen = select(noted.c.value).select_from(SEEN).join(noted, true()).where(*notes, SEEN.c.pass_id == full_pass_id)
    result = session.execute(
        delete(table).where(
            table.c.connection_id == owner.connection_id,
            table.c.resource == owner.resource,
            or_(table.c.full_pass_id.is_(None), table.c.full_pass_id != full_pass_id),
            table.c.external_id.not_in(seen),
        )
    )
    session.execute(delete(SEEN).where(*notes))
    return int(getattr(result, "rowcount", 0) or 0)


def delete_by_external_id(session: Session, table: Table, owner: Owner, external_ids: set[str]) -> int:
    """Delete the (connection, resource)'s rows of `table` with these external ids."""
    if not external_ids:
        return 0
    ids = list(session.scalars(rows_by_external_id(table, owner, external_ids, [table.c.id])))
    if not ids:
        return 0
    result = session.execute(delete(table).where(table.c.id.in_(ids)))
    return int(getattr(result, "rowcount", 0) or 0)
