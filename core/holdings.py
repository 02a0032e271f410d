"""The holdings registry: what each table holds of people's data, whose it is, and what export and erase do with it.

Each package declares its tables' holdings beside their models (`__table_args__ = (..., holding(...))`), in the
table's `info`; this module collects them from the metadata by table name, so `sync/` (retention) and `hub/`
(disconnect, export, erase) read one list without importing the packages that own the tables.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, Table, delete, inspect, select
from sqlalchemy.orm import Session

INFO_KEY = "holding"


class Owner(enum.StrEnum):
    """Whose data a row is: a connection's, a user's, a workspace's, or nobody's (no personal data)."""

    CONNECTION = "connection"
    USER = "user"
    WORKSPACE = "workspace"
    NOBODY = "nobody"


class Role(enum.StrEnum):
    """What the hub does with the rows.

    records  synced integration data: exported; deleted when the user disconnects with "delete data"
    secret   sealed tokens and cursors: erased at every disconnect; never exported
    scratch  a sync's working notes (ids a pass has seen): erased at every disconnect; never exported
    history  bookkeeping (the connection, its runs and schedules): exported; erased with the connection
    audit    who did what, ids and counts only: exported; kept after an erase as the record that it happened
    tombstone  that a record was deleted (its id, kind and when), for the CRM's change feed: never exported;
             kept after an erase (the CRM must learn of it); expires after the retention window
    none     no personal data (the reason says why)
    """

    RECORDS = "records"
    SECRET = "secret"  # noqa: S105 (a role name, not a password)
    SCRATCH = "scratch"
    HISTORY = "history"
    AUDIT = "audit"
    TOMBSTONE = "tombstone"
    NONE = "none"


@dataclass(frozen=True)
class Holding:
    """`key` is the column naming the owner; a table owned through another table's rows names that `parent`
    instead (its foreign key to the parent is followed)."""

    owner: Owner
    role: Role
    key: str | None = None
    parent: str | None = None
    reason: str | None = None

    @property
    def exported(self) -> bool:
        return self.role in (Role.RECORDS, Role.HISTORY, Role.AUDIT)


class UndeclaredTables(Exception):
    """A table's holdings are not declared (or its model was not imported): export and erase would miss it."""


def holding(
    owner: Owner, role: Role, key: str | None = None, parent: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """The `__table_args__` entry that declares a table's holdings."""
    if (owner == Owner.NOBODY) != (role == Role.NONE) or (role == Role.NONE and not reason):
        raise ValueError("a table holds no personal data only with owner NOBODY, role NONE and a reason")
    if owner != Owner.NOBODY and (key is None) == (parent is None):
        raise ValueError("a table with personal data names either its owner column (key) or its parent table")
    return {"info": {INFO_KEY: Holding(owner, role, key, parent, reason)}}


def declared(metadata: MetaData) -> dict[str, Holding]:
    """Every table's holdings by name; raises UndeclaredTables naming each table that has none."""
    found = {name: table.info.get(INFO_KEY) for name, table in metadata.tables.items()}
    missing = sorted(name for name, value in found.items() if not isinstance(value, Holding))
    if missing:
        raise UndeclaredTables(f"tables without declared holdings: {', '.join(missing)}")
    return {name: value for name, value in found.items() if isinstance(value, Holding)}


def check_database(session: Session, metadata: MetaData) -> None:
    """Refuse to export or erase when the database has a table this process does not know the holdings of."""
    declared(metadata)
    present = set(inspect(session.connection()).get_table_names()) - {"alembic_version"}
    unknown = sorted(present - set(metadata.tables))
    if unknown:
        raise UndeclaredTables(f"tables in the database whose models this process did not load: {', '.join(unknown)}")


def _rows_of(table: Table, parent: Table, key: str, connection_id: uuid.UUID) -> Any:
    fk = next(fk for fk in table.foreign_keys if fk.column.table is parent)
    return fk.parent.in_(select(fk.column).where(parent.c[key] == connection_id))


def erase_connection(
    session: Session, metadata: MetaData, connection_id: uuid.UUID, roles: set[Role]
) -> dict[str, int]:
    """Delete a connection's rows from every table whose role is in `roles`, children before parents; returns the
    rows deleted per table. The connection row itself is the caller's to delete."""
    check_database(session, metadata)
    holdings = declared(metadata)
    deleted: dict[str, int] = {}
    for table in reversed(metadata.sorted_tables):
        found = holdings[table.name]
        if found.owner != Owner.CONNECTION or found.role not in roles or table.name == "connections":
            continue
        if found.parent is not None:
            parent = metadata.tables[found.parent]
            parent_key = holdings[found.parent].key
            assert parent_key is not None
            where = _rows_of(table, parent, parent_key, connection_id)
        else:
            assert found.key is not None
            where = table.c[found.key] == connection_id
        result = session.execute(delete(table).where(where))
        deleted[table.name] = int(getattr(result, "rowcount", 0) or 0)
    return deleted
