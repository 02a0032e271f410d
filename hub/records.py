"""The CRM records API: keyset pagination over the workspace's records."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.models import ContactRow


def _encode(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def _decode(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise HTTPException(400, "cursor is not one this API issued") from exc


def contact_view(row: ContactRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "connection_id": str(row.connection_id),
        "provider": row.provider,
        "external_id": row.external_id,
        "display_name": row.display_name,
        "given_name": row.given_name,
        "family_name": row.family_name,
        "emails": row.emails,
        "phones": row.phones,
        "organization": row.organization,
        "job_title": row.job_title,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def contacts_page(
    session: Session, workspace_id: str, cursor: str | None, limit: int, connection_id: uuid.UUID | None
) -> dict[str, Any]:
    query = select(ContactRow).where(ContactRow.workspace_id == workspace_id).order_by(ContactRow.id).limit(limit + 1)
    if connection_id is not None:
        query = query.where(ContactRow.connection_id == connection_id)
    if cursor:
        query = query.where(ContactRow.id > _decode(cursor))
    rows = list(session.scalars(query).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return {"contacts": [contact_view(r) for r in rows], "next_cursor": _encode(rows[-1].id) if more else None}
