"""Record kinds: each kind of CRM record declares its table, its sink and its API in its own module in `crm/`;
the engine and the hub read this registry and name no kind themselves."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import Select, Table, delete, func, select
from sqlalchemy.orm import Session

from core.models import readable

if TYPE_CHECKING:
    from crm.sink import Sink


class BadCursor(ValueError):
    """A page cursor this API did not issue."""


@dataclass(frozen=True)
class RecordQuery:
    """One page request of a kind's records by `reader`, scoped to the connections of their workspace they may
    read (and optionally one of them)."""

    workspace_id: str
    reader: str
    cursor: str | None
    limit: int
    connection_id: uuid.UUID | None
    filters: BaseModel

    def readable(self) -> Select[uuid.UUID]:
        """The connections whose records the reader may see: what a kind's read-time join must keep to."""
        return readable(self.workspace_id, self.reader)


@dataclass(frozen=True)
class RecordKind:
    """`name` is what a capability's `record_kind` says; `segment` is its API path (`/api/v1/<segment>`) and the
    key of its counts; `query` is its read query (filters, read-time joins, grouping) over `table`, whose rows
    carry the provenance columns every record table has. The query selects the kind's row first, then any columns
    its joins add; `view` takes them in that order."""

    name: str
    segment: str
    sink: type[Sink]
    table: Table
    filters: type[BaseModel]
    query: Callable[[RecordQuery], Select[Any]]
    view: Callable[..., dict[str, Any]]
    lister: Callable[[Session, RecordKind, RecordQuery], dict[str, Any]] | None = None
    """A kind whose API pages are not one row each (events expanded and grouped); None: `page`."""
    views: Callable[[Session, RecordQuery, Sequence[Any]], list[dict[str, Any]]] | None = None
    """The change feed's views of a page of the query's rows, with what they join at read time (an event's
    attendees); None: `view` of each row."""
    forget: Callable[[Session, str, str], dict[str, int]] | None = None
    """Delete a person, named by a trimmed lower-cased address, from the workspace's records of this kind (the
    records that carry it, or the person within them); rows touched, by what."""


@cache
def kinds() -> dict[str, RecordKind]:
    """Every record kind by name: one line per kind."""
    from crm.contacts import KIND as CONTACT
    from crm.events import KIND as EVENT
    from crm.leads import KIND as LEAD

    return {kind.name: kind for kind in (CONTACT, LEAD, EVENT)}


def kind(name: str) -> RecordKind:
    return kinds()[name]


def _encode(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def _decode(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise BadCursor("cursor is not one this API issued") from exc


def page(session: Session, record_kind: RecordKind, query: RecordQuery) -> dict[str, Any]:
    """One keyset page of a kind's records: `{<segment>: [...], "next_cursor": ...}`."""
    table = record_kind.table
    chosen = record_kind.query(query).where(
        table.c.workspace_id == query.workspace_id, table.c.connection_id.in_(query.readable())
    )
    if query.connection_id is not None:
        chosen = chosen.where(table.c.connection_id == query.connection_id)
    if query.cursor:
        chosen = chosen.where(table.c.id > _decode(query.cursor))
    rows = list(session.execute(chosen.order_by(table.c.id).limit(query.limit + 1)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return {
        record_kind.segment: [record_kind.view(*row) for row in rows],
        "next_cursor": _encode(rows[-1][0].id) if more else None,
    }


def counts(session: Session, connection_id: uuid.UUID, names: Iterable[str]) -> dict[str, int]:
    """Records per kind a connection holds, keyed by each kind's segment (for its owner's view of it)."""
    found: dict[str, int] = {}
    for name in dict.fromkeys(names):
        table = kind(name).table
        total = session.scalar(select(func.count()).select_from(table).where(table.c.connection_id == connection_id))
        found[kind(name).segment] = total or 0
    return found


def holds_records(session: Session, record_kind: RecordKind, connection_id: uuid.UUID, resource: str) -> bool:
    """Whether a (connection, resource) holds any record of this kind."""
    table = record_kind.table
    mine = (table.c.connection_id == connection_id, table.c.resource == resource)
    return session.scalar(select(table.c.id).where(*mine).limit(1)) is not None


def delete_resource_records(session: Session, connection_id: uuid.UUID, resource: str) -> int:
    """Delete the records one resource of a connection brought in, of every kind (indexes go with them by
    cascade), and what an unfinished full pass noted of them."""
    from crm.sink import SEEN

    deleted = 0
    for record_kind in kinds().values():
        table = record_kind.table
        mine = (table.c.connection_id == connection_id, table.c.resource == resource)
        deleted += int(getattr(session.execute(delete(table).where(*mine)), "rowcount", 0) or 0)
    session.execute(delete(SEEN).where(SEEN.c.connection_id == connection_id, SEEN.c.resource == resource))
    return deleted
