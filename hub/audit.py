"""The audit log as people read it: newest first, keyset-paged on (at, id), for one user (their connections'
entries, their own actions and those about them) or for a whole workspace (the CRM's service calls)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from core.models import AuditEvent
from crm.kinds import BadCursor
from hub.export import about_user

AUDIT = AuditEvent.__table__


def _encode(at: datetime, entry_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(json.dumps([at.isoformat(), str(entry_id)]).encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, entry_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), uuid.UUID(entry_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor("cursor is not one this API issued") from exc


def entry_view(entry: AuditEvent) -> dict[str, Any]:
    view = {
        "id": str(entry.id),
        "at": entry.at.isoformat(),
        "action": entry.action,
        "actor": entry.actor,
        "connection_id": str(entry.connection_id) if entry.connection_id else None,
        "detail": entry.detail,
    }
    if entry.day is not None:
        view.update(day=entry.day.isoformat(), times=entry.times)
    return view


def audit_page(
    session: Session, workspace_id: str, user_id: str | None, cursor: str | None, limit: int
) -> dict[str, Any]:
    """One page of the workspace's entries (only those concerning `user_id` when given), newest first."""
    chosen = select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)
    if user_id is not None:
        chosen = chosen.where(about_user(AUDIT, workspace_id, user_id))  # type: ignore[arg-type]
    if cursor:
        chosen = chosen.where(tuple_(AuditEvent.at, AuditEvent.id) < tuple_(*_decode(cursor)))
    found = list(session.scalars(chosen.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    return {
        "entries": [entry_view(entry) for entry in found],
        "next_cursor": _encode(found[-1].at, found[-1].id) if more else None,
    }
