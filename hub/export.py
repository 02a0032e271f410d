"""A user's integration data as one JSON document, streamed: the holdings registry decides which tables go in and
how each one's rows are tied to the user; rows come through server-side cursors, so memory stays flat.

The document: `{"format", "workspace_id", "user_id", "exported_at", "tables": {<table>: [rows...], ...},
"counts": {<table>: n}}`, one key per exported table (records, history and audit roles), parents before
children. Secret and scratch tables are never read. An audit entry `privacy.exported` with the counts is left
when the stream ends (`complete` false if the reader went away first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import JSON, ColumnElement, MetaData, Select, Table, Text, cast, false, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.holdings import Holding, Owner, check_database, declared
from core.models import Connection, audit_workspace, utcnow
from migrations import target_metadata

FORMAT = "synchub.export/1"
BATCH = 1000
"""Rows fetched per round trip of a server-side cursor."""
CHUNK = 256 * 1024
"""Bytes gathered before a chunk goes to the client: one chunk per thread hop of the streaming response."""

encode = msgspec.json.Encoder().encode


def exported_tables(metadata: MetaData) -> list[Table]:
    """Every table whose rows an export carries, parents before children."""
    holdings = declared(metadata)
    return [table for table in metadata.sorted_tables if holdings[table.name].exported]


def about_user(table: Table, workspace_id: str, user_id: str) -> ColumnElement[bool]:
    """Rows of a workspace-wide table that concern one user: their connections', their own actions (`actor`),
    or rows naming them (`user_id`, or `user_id` in a JSON `detail`). A table with none of these columns
    holds nothing of theirs."""
    mine = select(Connection.id).where(Connection.workspace_id == workspace_id, Connection.user_id == user_id)
    columns = table.c
    tests: list[ColumnElement[bool]] = []
    if "connection_id" in columns:
        tests.append(columns.connection_id.in_(mine))
    if "actor" in columns:
        tests.append(columns.actor == user_id)
    if "user_id" in columns:
        tests.append(columns.user_id == user_id)
    if "detail" in columns:
        tests.append(columns.detail["user_id"].as_string() == user_id)
    return or_(*tests) if tests else false()


def rows_of_user(metadata: MetaData, table: Table, found: Holding, workspace_id: str, user_id: str) -> Select[Any]:
    """The select of one table's rows that belong to the user, by how the registry says the table is owned."""
    mine = select(Connection.id).where(Connection.workspace_id == workspace_id, Connection.user_id == user_id)
    chosen = select(table)
    if found.owner == Owner.CONNECTION and found.parent is not None:
        parent = metadata.tables[found.parent]
        parent_key = declared(metadata)[found.parent].key
        assert parent_key is not None
        link = next(fk for fk in table.foreign_keys if fk.column.table is parent)
        chosen = chosen.where(link.parent.in_(select(link.column).where(parent.c[parent_key].in_(mine))))
    elif found.owner == Owner.CONNECTION:
        assert found.key is not None
        chosen = chosen.where(table.c[found.key].in_(mine))
    elif found.owner == Owner.USER:
        assert found.key is not None
        chosen = chosen.where(table.c[found.key] == user_id)
        if "workspace_id" in table.c:
            chosen = chosen.where(table.c.workspace_id == workspace_id)
    elif found.owner == Owner.WORKSPACE:
        assert found.key is not None
        chosen = chosen.where(table.c[found.key] == workspace_id, about_user(table, workspace_id, user_id))
    else:
        chosen = chosen.where(false())
    return chosen.order_by(*table.primary_key.columns)


@dataclass
class Export:
    """One user's export, ready to stream: `chunks()` yields the document; the audit entry is written when the
    stream ends."""

    engine: Engine
    sessions: sessionmaker[Session]
    workspace_id: str
    user_id: str
    actor: str
    metadata: MetaData = field(default_factory=target_metadata)

    def check(self) -> None:
        """Refuse before a byte is sent when the database has a table whose holdings this process does not know."""
        with self.sessions() as session:
            check_database(session, self.metadata)

    def chunks(self) -> Iterator[bytes]:
        counts: dict[str, int] = {}
        complete = False
        try:
            yield from self._document(counts)
            complete = True
        finally:
            with transaction(self.sessions) as session:
                audit_workspace(
                    session,
                    self.workspace_id,
                    self.actor,
                    "privacy.exported",
                    user_id=self.user_id,
                    complete=complete,
                    rows=counts,
                )

    def _document(self, counts: dict[str, int]) -> Iterator[bytes]:
        holdings = declared(self.metadata)
        head = {"format": FORMAT, "workspace_id": self.workspace_id, "user_id": self.user_id}
        buffer = bytearray(encode({**head, "exported_at": utcnow()})[:-1] + b',"tables":{')
        # One snapshot for the whole document: a sync writing meanwhile does not tear it.
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        with self.engine.connect().execution_options(**options) as connection, connection.begin():
            for index, table in enumerate(exported_tables(self.metadata)):
                name = str(table.name)
                buffer += (b"," if index else b"") + encode(name) + b":["
                chosen = rows_of_user(self.metadata, table, holdings[name], self.workspace_id, self.user_id)
                columns = [str(column.name) for column in table.columns]
                raw = [isinstance(column.type, JSON) for column in table.columns]
                # JSON columns come as their text and go out as it is: decoding them only to encode them again
                # was a third of the export's time.
                chosen = chosen.with_only_columns(
                    *(
                        cast(column, Text) if is_json else column
                        for column, is_json in zip(table.columns, raw, strict=True)
                    )
                )
                result = connection.execution_options(yield_per=BATCH).execute(chosen)
                count = 0
                for row in result:
                    if count:
                        buffer += b","
                    values = [
                        msgspec.Raw(value.encode()) if is_json and value is not None else value
                        for value, is_json in zip(row, raw, strict=True)
                    ]
                    buffer += encode(dict(zip(columns, values, strict=True)))
                    count += 1
                    if len(buffer) >= CHUNK:
                        yield bytes(buffer)
                        buffer.clear()
                buffer += b"]"
                counts[name] = count
        buffer += b'},"counts":' + encode(counts) + b"}"
        yield bytes(buffer)
