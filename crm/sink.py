"""The sink: idempotent upserts and deletes of canonical records, keyed by (connection, external id)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Table, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from core.models import Connection, utcnow
from crm.models import ContactEmailRow, ContactRow
from crm.records import Contact

CONTACTS: Table = ContactRow.__table__  # type: ignore[assignment]
EMAILS: Table = ContactEmailRow.__table__  # type: ignore[assignment]

CONTENT_FIELDS = (
    "display_name",
    "given_name",
    "family_name",
    "emails",
    "phones",
    "organization",
    "job_title",
    "primary_email",
)


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    deleted: int = 0

    def add(self, other: Counts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.deleted += other.deleted


def _content(contact: Contact) -> dict[str, Any]:
    return {
        "display_name": contact.display_name,
        "given_name": contact.given_name,
        "family_name": contact.family_name,
        "emails": [{"value": e.value, "type": e.type, "primary": e.primary} for e in contact.emails],
        "phones": [{"value": p.value, "type": p.type, "primary": p.primary} for p in contact.phones],
        "organization": contact.organization,
        "job_title": contact.job_title,
        "primary_email": contact.primary_email,
    }


def _addresses(content: dict[str, Any]) -> set[str]:
    return {email["value"].strip().lower() for email in content["emails"] if email["value"].strip()}


def bulk_insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert a page of rows: on PostgreSQL with COPY in the session's transaction (psycopg formats the rows in C);
    elsewhere as an executemany. The ORM's bulk insert sent one statement per row, and an INSERT from unnest()
    arrays spent most of its time quoting array elements in Python."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    names = list(rows[0])
    json_columns = {name for name in names if isinstance(table.c[name].type, JSON)}
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(row[n]) if n in json_columns else row[n] for n in names])


class ContactSink:
    """Writes one page of contacts for one connection, in the caller's transaction."""

    def __init__(self, session: Session, connection: Connection) -> None:
        self.session = session
        self.connection = connection

    def apply(self, records: Sequence[Contact], deleted_ids: Iterable[str], full_pass_id: str | None) -> Counts:
        counts = Counts()
        latest = {record.external_id: record for record in records}
        existing = self._existing({*latest, *(p for r in latest.values() for p in r.previous_external_ids)})
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        reindex: dict[uuid.UUID, set[str]] = {}
        now = utcnow()
        for record in latest.values():
            content = _content(record)
            row = existing.get(record.external_id) or next(
                (existing[p] for p in record.previous_external_ids if p in existing), None
            )
            if row is None:
                new_id = uuid.uuid4()
                inserts.append(
                    {
                        "id": new_id,
                        "workspace_id": self.connection.workspace_id,
                        "connection_id": self.connection.id,
                        "provider": self.connection.auth_provider,
                        "external_id": record.external_id,
                        "full_pass_id": full_pass_id,
                        "created_at": now,
                        "updated_at": now,
                        **content,
                    }
                )
                reindex[new_id] = _addresses(content)
                continue
            changed = row["external_id"] != record.external_id or any(row[k] != content[k] for k in CONTENT_FIELDS)
            stamp = full_pass_id is not None and row["full_pass_id"] != full_pass_id
            if changed or stamp:
                values: dict[str, Any] = {"id": row["id"], "external_id": record.external_id}
                if changed:
                    values.update(content, updated_at=now)
                    reindex[row["id"]] = _addresses(content)
                if full_pass_id is not None:
                    values["full_pass_id"] = full_pass_id
                updates.append(values)
            counts.updated += int(changed)
        self._update(updates)
        bulk_insert(self.session, CONTACTS, inserts)
        counts.created = len(inserts)
        self._reindex(reindex, replaced={u["id"] for u in updates if "emails" in u})
        counts.deleted = self._delete(set(deleted_ids) - set(latest))
        return counts

    def delete_unseen(self, full_pass_id: str) -> int:
        """After a complete full pass: remove the connection's records that pass did not see."""
        result = self.session.execute(
            delete(ContactRow).where(
                ContactRow.connection_id == self.connection.id,
                or_(ContactRow.full_pass_id.is_(None), ContactRow.full_pass_id != full_pass_id),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def _update(self, updates: list[dict[str, Any]]) -> None:
        """Executemany by primary key, one statement per shape of change (content, stamp, or both)."""
        by_shape: dict[frozenset[str], list[dict[str, Any]]] = {}
        for values in updates:
            by_shape.setdefault(frozenset(values), []).append({"row_id": values["id"], **values})
        for shape, rows in by_shape.items():
            columns: dict[str, Any] = {name: bindparam(name) for name in shape if name != "id"}
            statement = update(CONTACTS).where(CONTACTS.c.id == bindparam("row_id")).values(columns)
            self.session.execute(statement, rows)

    def _existing(self, external_ids: set[str]) -> dict[str, dict[str, Any]]:
        if not external_ids:
            return {}
        columns = [ContactRow.id, ContactRow.external_id, ContactRow.full_pass_id] + [
            getattr(ContactRow, name) for name in CONTENT_FIELDS
        ]
        rows = self.session.execute(
            select(*columns).where(
                ContactRow.connection_id == self.connection.id, ContactRow.external_id.in_(external_ids)
            )
        ).mappings()
        return {row["external_id"]: dict(row) for row in rows}

    def _reindex(self, addresses: dict[uuid.UUID, set[str]], replaced: set[uuid.UUID]) -> None:
        """Write the email index of new and changed contacts; only changed ones have old entries to drop."""
        if replaced:
            self.session.execute(delete(ContactEmailRow).where(ContactEmailRow.contact_id.in_(replaced)))
        rows = [
            {"contact_id": contact_id, "email": email, "workspace_id": self.connection.workspace_id}
            for contact_id, emails in addresses.items()
            for email in emails
        ]
        bulk_insert(self.session, EMAILS, rows)

    def _delete(self, external_ids: set[str]) -> int:
        if not external_ids:
            return 0
        result = self.session.execute(
            delete(ContactRow).where(
                ContactRow.connection_id == self.connection.id, ContactRow.external_id.in_(external_ids)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


SINKS: dict[str, Callable[[Session, Connection], ContactSink]] = {"contact": ContactSink}
