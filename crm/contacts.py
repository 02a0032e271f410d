"""The contact record kind: its rows (with an email index that leads and attendees join at read time), its sink,
and its API (`/api/v1/contacts`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from psycopg.errors import UniqueViolation
from pydantic import BaseModel, Field
from sqlalchemy import Select, String, Table, bindparam, cast, delete, func, or_, select
from sqlalchemy import update as update_statement
from sqlalchemy.orm import Session

from core.models import utcnow
from crm.kinds import RecordKind, RecordQuery
from crm.models import ContactEmailRow, ContactRow
from crm.records import Contact
from crm.sink import (
    Counts,
    Owner,
    bulk_insert,
    delete_by_external_id,
    delete_unseen,
    encode_json,
    note_seen,
    random_uuids,
    rows_by_external_id,
)
from crm.suppression import like_pattern, without_suppressed

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
NEW_CONTACT_COLUMNS = (
    "id",
    "workspace_id",
    "connection_id",
    "provider",
    "resource",
    "external_id",
    "created_at",
    "updated_at",
    *CONTENT_FIELDS,
    "full_pass_id",
)
EMAIL_COLUMNS = ("contact_id", "email", "workspace_id")


def _content(contact: Contact) -> dict[str, Any]:
    """A contact's stored fields as the database gives them back: emails and phones as lists (not the record's
    tuples, which never compare equal to the lists a JSON column reads back) of objects with every key."""
    return {
        "display_name": contact.display_name,
        "given_name": contact.given_name,
        "family_name": contact.family_name,
        "emails": msgspec.to_builtins(list(contact.emails)),
        "phones": msgspec.to_builtins(list(contact.phones)),
        "organization": contact.organization,
        "job_title": contact.job_title,
        "primary_email": contact.primary_email,
    }


def addresses(contact: Contact) -> set[str]:
    """The contact's addresses as the email index holds them: trimmed, lower-cased, without blanks."""
    return indexed_form(email.value for email in contact.emails)


def stored_addresses(emails: Iterable[dict[str, Any]]) -> set[str]:
    """What the email index holds for a stored row's `emails`."""
    return indexed_form(str(email.get("value") or "") for email in emails)


def indexed_form(values: Iterable[str]) -> set[str]:
    found = {value.strip().lower() for value in values}
    found.discard("")
    return found


@dataclass(frozen=True)
class NewRows:
    """A page's records as new rows: record i's contact row (all columns but the full-pass stamp) and its
    email-index rows. Built ahead on the thread that reads the next page, while this one waits on the database
    (so `created_at` is when the page was read); a record that turns out to exist is written the slow way."""

    contacts: list[tuple[Any, ...]]
    emails: list[list[tuple[Any, ...]]]


class ContactSink:
    """Writes one page of contacts for one (connection, resource), in the caller's transaction."""

    tables: ClassVar[tuple[Table, ...]] = (CONTACTS, EMAILS)

    def __init__(self, session: Session, owner: Owner) -> None:
        self.session = session
        self.owner = owner

    @staticmethod
    def prepare(owner: Owner, records: Sequence[Contact]) -> NewRows:
        """Every record as a new row; pure, so it may run on any thread. Ids and times are text, as COPY takes them:
        psycopg's dumpers for UUID and datetime objects run in Python and made formatting a row four times slower
        than the strings PostgreSQL parses anyway."""
        ids = random_uuids(len(records))
        stamped = utcnow().isoformat()
        connection_id = str(owner.connection_id)
        workspace, provider, resource = owner.workspace_id, owner.provider, owner.resource
        contacts = [
            (
                contact_id,
                workspace,
                connection_id,
                provider,
                resource,
                record.external_id,
                stamped,
                stamped,
                record.display_name,
                record.given_name,
                record.family_name,
                encode_json(record.emails).decode(),
                encode_json(record.phones).decode(),
                record.organization,
                record.job_title,
                record.primary_email,
            )
            for contact_id, record in zip(ids, records, strict=True)
        ]
        emails = [
            [(contact_id, address, workspace) for address in addresses(record)]
            for contact_id, record in zip(ids, records, strict=True)
        ]
        return NewRows(contacts, emails)

    def apply(
        self,
        records: Sequence[Contact],
        deleted_ids: Iterable[str],
        full_pass_id: str | None,
        ready: NewRows | None = None,
        fresh: bool = False,
    ) -> Counts:
        """Upsert a page and delete `deleted_ids`; `ready` is `prepare(records)` if it was built ahead. `fresh`: this
        (connection, resource) held no record when the pass began, so the page is first tried as all new."""
        deleted_ids = list(deleted_ids)
        records, suppressed = without_suppressed(self.session, self.owner.workspace_id, records, addresses)
        if suppressed:
            ready = None  # built for the page as read; the kept records are rebuilt
        counts = self._apply(records, deleted_ids, full_pass_id, ready, fresh)
        counts.suppressed = suppressed
        return counts

    def _apply(
        self,
        records: Sequence[Contact],
        deleted_ids: list[str],
        full_pass_id: str | None,
        ready: NewRows | None,
        fresh: bool,
    ) -> Counts:
        # A contact the page lists twice is written once, as its later listing says.
        last = {record.external_id: index for index, record in enumerate(records)}
        if ready is None:
            ready = self.prepare(self.owner, records)
        if fresh and not deleted_ids and self._all_new(records, last, full_pass_id, ready):
            return Counts(created=len(last))
        counts = Counts()
        wanted = set(last)
        for record in records:
            wanted.update(record.previous_external_ids)
        existing = self._existing(wanted)
        inserts: list[tuple[Any, ...]] = []
        indexed: list[tuple[Any, ...]] = []
        updates: list[dict[str, Any]] = []
        reindex: dict[uuid.UUID, set[str]] = {}
        seen: list[str] = []
        now = utcnow()
        stamp_column = (full_pass_id,)
        for index in last.values():
            record = records[index]
            row = existing.get(record.external_id) if existing else None
            if row is None and existing and record.previous_external_ids:
                row = next((existing[p] for p in record.previous_external_ids if p in existing), None)
            if row is None:
                inserts.append(ready.contacts[index] + stamp_column)
                indexed.extend(ready.emails[index])
                continue
            content = _content(record)
            if row["external_id"] == record.external_id and all(row[k] == content[k] for k in CONTENT_FIELDS):
                # Unchanged: not written. A full pass notes that it saw the row, unless the row already bears it.
                if full_pass_id is not None and row["full_pass_id"] != full_pass_id:
                    seen.append(record.external_id)
                continue
            values: dict[str, Any] = {"id": row["id"], "external_id": record.external_id, **content, "updated_at": now}
            if full_pass_id is not None:
                values["full_pass_id"] = full_pass_id
            updates.append(values)
            if addresses(record) != stored_addresses(row["emails"]):
                reindex[row["id"]] = addresses(record)
            counts.updated += 1
        self._update(updates)
        note_seen(self.session, CONTACTS, self.owner, full_pass_id, seen)
        bulk_insert(self.session, CONTACTS, NEW_CONTACT_COLUMNS, inserts)
        counts.created = len(inserts)
        workspace = self.owner.workspace_id
        indexed.extend((contact_id, email, workspace) for contact_id, emails in reindex.items() for email in emails)
        self._reindex(indexed, replaced=list(reindex))
        counts.deleted = delete_by_external_id(self.session, CONTACTS, self.owner, set(deleted_ids) - set(last))
        return counts

    def _all_new(
        self, records: Sequence[Contact], last: dict[str, int], full_pass_id: str | None, ready: NewRows
    ) -> bool:
        """Write the page as new rows without looking any up, under a savepoint: False, with nothing written, if
        one exists after all (a provider that lists a contact on two pages of a pass); the caller then writes the
        page the usual way. Skipping the lookup is a tenth of a first sync's database time."""
        if any(record.previous_external_ids for record in records):
            return False
        stamp = (full_pass_id,)
        try:
            with self.session.begin_nested():
                bulk_insert(
                    self.session, CONTACTS, NEW_CONTACT_COLUMNS, [ready.contacts[i] + stamp for i in last.values()]
                )
                bulk_insert(
                    self.session, EMAILS, EMAIL_COLUMNS, [row for i in last.values() for row in ready.emails[i]]
                )
        except UniqueViolation:
            return False
        return True

    def delete_unseen(self, full_pass_id: str) -> int:
        """After a complete full pass: remove the contacts it did not see (the email index follows by cascade)."""
        return delete_unseen(self.session, CONTACTS, self.owner, full_pass_id)

    def _update(self, updates: list[dict[str, Any]]) -> None:
        """Executemany by primary key; rows of a full pass also take its stamp."""
        by_shape: dict[frozenset[str], list[dict[str, Any]]] = {}
        for values in updates:
            by_shape.setdefault(frozenset(values), []).append({"row_id": values["id"], **values})
        for shape, rows in by_shape.items():
            columns: dict[str, Any] = {name: bindparam(name) for name in shape if name != "id"}
            statement = update_statement(CONTACTS).where(CONTACTS.c.id == bindparam("row_id")).values(columns)
            self.session.execute(statement, rows)

    def _existing(self, external_ids: set[str]) -> dict[str, dict[str, Any]]:
        if not external_ids:
            return {}
        columns = [ContactRow.id, ContactRow.external_id, ContactRow.full_pass_id] + [
            getattr(ContactRow, name) for name in CONTENT_FIELDS
        ]
        found = rows_by_external_id(CONTACTS, self.owner, external_ids, columns)
        return {row["external_id"]: dict(row) for row in self.session.execute(found).mappings()}

    def _reindex(self, rows: list[tuple[Any, ...]], replaced: list[uuid.UUID]) -> None:
        """Write the email index of new and changed contacts; only changed ones have old entries to drop."""
        if replaced:
            self.session.execute(delete(ContactEmailRow).where(ContactEmailRow.contact_id.in_(replaced)))
        bulk_insert(self.session, EMAILS, EMAIL_COLUMNS, rows)


class ContactFilters(BaseModel):
    email: str | None = Field(default=None, description="Only contacts with this address (any of theirs).")


def contacts_query(query: RecordQuery) -> Select[Any]:
    """The workspace's contacts, by address through the email index when asked. The index's rows are matched
    only to pick contacts, which `page` then keeps to the connections the reader may read, so an address tells
    nothing of a contact the reader may not see."""
    chosen = select(ContactRow)
    filters = query.filters
    assert isinstance(filters, ContactFilters)
    if filters.email:
        matching = select(ContactEmailRow.contact_id).where(
            ContactEmailRow.workspace_id == query.workspace_id, ContactEmailRow.email == filters.email.strip().lower()
        )
        chosen = chosen.where(ContactRow.id.in_(matching))
    return chosen


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


def forget_person(session: Session, workspace_id: str, address: str) -> dict[str, int]:
    """A contact that carries the address goes whole (its email index rows with it)."""
    found = session.execute(
        delete(ContactRow).where(
            ContactRow.workspace_id == workspace_id,
            or_(
                ContactRow.id.in_(
                    select(EMAILS.c.contact_id).where(EMAILS.c.workspace_id == workspace_id, EMAILS.c.email == address)
                ),
                func.lower(cast(ContactRow.emails, String)).like(like_pattern(address)),
                func.lower(ContactRow.primary_email) == address,
            ),
        )
    )
    return {"contacts": int(getattr(found, "rowcount", 0) or 0)}


KIND = RecordKind(
    name="contact",
    segment="contacts",
    sink=ContactSink,
    table=CONTACTS,
    filters=ContactFilters,
    query=contacts_query,
    view=contact_view,
    forget=forget_person,
)
