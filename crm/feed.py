"""The records' change feed: a kind's rows changed since a moment, and the tombstones of those deleted since,
in one order on (time, id) and keyset-paged with an opaque cursor, so a CRM that follows it removes what the hub
removed.

A tombstone is `{"id": ..., "deleted_at": ...}`. Tombstones carry no connection (they outlive an erase of it),
so they are the workspace's: a reader sees the ids of deleted records of connections they could not read,
which tells nothing but that some record went. Content filters and `connection_id` narrow the records only.

Times are the writer's clock when the row was written, not when its transaction committed: a follower resumes
from a little before the last time it saw (a minute covers a sync page's transaction), and ids it already has
come again.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import literal, select, text, tuple_
from sqlalchemy.orm import Session

from crm.kinds import BadCursor, RecordKind, RecordQuery
from crm.models import TombstoneRow

TOMBSTONES = TombstoneRow.__table__


def _encode(at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(json.dumps(["f", at.isoformat(), str(row_id)]).encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        mark, at, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if mark != "f":
            raise ValueError(mark)
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor("cursor is not one this API issued (with updated_since, pass the feed's own cursor)") from exc


def without_tombstones(session: Session) -> None:
    """For the rest of the session's transaction, deletions of records leave no tombstone: for removing a whole
    workspace, whose change feed nobody will read again (the trigger reads `synchub.tombstones`)."""
    session.execute(text("SELECT set_config('synchub.tombstones', 'off', true)"))


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def feed_page(session: Session, record_kind: RecordKind, query: RecordQuery, since: datetime) -> dict[str, Any]:
    """`{<segment>: [...], "next_cursor": ...}`: records updated at or after `since` and tombstones of records
    deleted at or after it, ordered by (updated_at or deleted_at, id)."""
    since = aware(since)
    after = _decode(query.cursor) if query.cursor else None
    table = record_kind.table
    records = record_kind.query(query).where(
        table.c.workspace_id == query.workspace_id,
        table.c.connection_id.in_(query.readable()),
        table.c.updated_at >= since,
    )
    if query.connection_id is not None:
        records = records.where(table.c.connection_id == query.connection_id)
    stones = select(TOMBSTONES.c.record_id, TOMBSTONES.c.deleted_at).where(
        TOMBSTONES.c.workspace_id == query.workspace_id,
        TOMBSTONES.c.kind == record_kind.segment,
        TOMBSTONES.c.deleted_at >= since,
    )
    if after is not None:
        mark = tuple_(literal(after[0]), literal(after[1]))
        records = records.where(tuple_(table.c.updated_at, table.c.id) > mark)
        stones = stones.where(tuple_(TOMBSTONES.c.deleted_at, TOMBSTONES.c.record_id) > mark)
    found = session.execute(records.order_by(table.c.updated_at, table.c.id).limit(query.limit + 1)).all()
    gone = session.execute(stones.order_by(TOMBSTONES.c.deleted_at, TOMBSTONES.c.record_id).limit(query.limit + 1))
    merged: list[tuple[datetime, uuid.UUID, Any]] = [(row[0].updated_at, row[0].id, row) for row in found]
    merged += [(deleted_at, record_id, None) for record_id, deleted_at in gone]
    merged.sort(key=lambda item: (item[0], item[1]))
    more = len(merged) > query.limit
    merged = merged[: query.limit]
    shown = [row for _, _, row in merged if row is not None]
    views = iter(
        record_kind.views(session, query, shown) if record_kind.views else [record_kind.view(*row) for row in shown]
    )
    items = [
        next(views) if row is not None else {"id": str(row_id), "deleted_at": at.isoformat()}
        for at, row_id, row in merged
    ]
    return {record_kind.segment: items, "next_cursor": _encode(*merged[-1][:2]) if more else None}
