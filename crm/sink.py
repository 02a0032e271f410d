"""The sink: idempotent upserts and deletes of canonical records, keyed by (connection, external id)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import (
    JSON,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    true,
)
from sqlalchemy import update as update_statement
from sqlalchemy.orm import Session

from core.models import Connection, utcnow
from crm.models import ContactEmailRow, ContactRow, FullPassSeenRow
from crm.records import Contact

CONTACTS: Table = ContactRow.__table__  # type: ignore[assignment]
EMAILS: Table = ContactEmailRow.__table__  # type: ignore[assignment]
SEEN: Table = FullPassSeenRow.__table__  # type: ignore[assignment]

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
    "external_id",
    "created_at",
    "updated_at",
    *CONTENT_FIELDS,
    "full_pass_id",
)
EMAIL_COLUMNS = ("contact_id", "email", "workspace_id")
encode_json = msgspec.json.Encoder().encode


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


def rows_by_external_id(
    session: Session, connection_id: uuid.UUID, external_ids: Iterable[str], columns: Sequence[Any]
) -> Select[Any]:
    """The connection's contacts with these external ids, the ids sent as one JSON parameter.

    A page's 1,000 ids as 1,000 bound parameters made a 20 kB statement that psycopg re-parsed and SQLAlchemy
    re-rendered on every page, costing more than the query. Each id is one probe of the unique
    (connection, external id) index through a LATERAL subquery (its LIMIT keeps the planner from flattening it):
    an `IN`/`ANY` over the JSON was planned from statistics that lag a bulk load, and filtered every row the
    connection had on every page.
    """
    document = bindparam("external_ids", encode_json(sorted(external_ids)).decode(), type_=Text)
    wanted = func.json_array_elements_text(cast(document, JSON)).table_valued("value").render_derived(name="wanted")
    found = (
        select(*columns)
        .where(ContactRow.connection_id == connection_id, ContactRow.external_id == wanted.c.value)
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


@dataclass(frozen=True)
class Owner:
    """Whose new rows a sink builds, read once per run so rows can be built outside any session."""

    workspace_id: str
    connection_id: uuid.UUID
    provider: str

    @classmethod
    def of(cls, connection: Connection) -> Owner:
        return cls(connection.workspace_id, connection.id, connection.auth_provider)


@dataclass(frozen=True)
class NewRows:
    """A page's records as new rows: record i's contact row (all columns but the full-pass stamp) and its
    email-index rows. Built ahead on the thread that reads the next page, while this one waits on the database
    (so `created_at` is when the page was read); a record that turns out to exist is written the slow way."""

    contacts: list[tuple[Any, ...]]
    emails: list[list[tuple[Any, ...]]]


class ContactSink:
    """Writes one page of contacts for one connection, in the caller's transaction."""

    def __init__(self, session: Session, connection: Connection) -> None:
        self.session = session
        self.connection = connection

    @staticmethod
    def prepare(owner: Owner, records: Sequence[Contact]) -> NewRows:
        """Every record as a new row; pure, so it may run on any thread. Ids and times are text, as COPY takes them:
        psycopg's dumpers for UUID and datetime objects run in Python and made formatting a row four times slower
        than the strings PostgreSQL parses anyway."""
        ids = random_uuids(len(records))
        stamped = utcnow().isoformat()
        connection_id = str(owner.connection_id)
        workspace, provider = owner.workspace_id, owner.provider
        contacts = [
            (
                contact_id,
                workspace,
                connection_id,
                provider,
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
    ) -> Counts:
        """Upsert a page and delete `deleted_ids`; `ready` is `prepare(records)` if it was built ahead."""
        counts = Counts()
        # A contact the page lists twice is written once, as its later listing says.
        last = {record.external_id: index for index, record in enumerate(records)}
        wanted = set(last)
        for record in records:
            wanted.update(record.previous_external_ids)
        existing = self._existing(wanted)
        if ready is None:
            ready = self.prepare(Owner.of(self.connection), records)
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
        self._saw(full_pass_id, seen)
        bulk_insert(self.session, CONTACTS, NEW_CONTACT_COLUMNS, inserts)
        counts.created = len(inserts)
        workspace = self.connection.workspace_id
        indexed.extend((contact_id, email, workspace) for contact_id, emails in reindex.items() for email in emails)
        self._reindex(indexed, replaced=list(reindex))
        counts.deleted = self._delete(set(deleted_ids) - set(last))
        return counts

    def delete_unseen(self, full_pass_id: str) -> int:
        """After a complete full pass: remove the connection's records that pass did not see, that is neither
        written (stamped with its id) nor noted as seen unchanged; then forget what this and any abandoned full
        pass of these records noted.

        `NOT IN`, not `NOT EXISTS`: PostgreSQL runs it as one hash of the noted ids whatever its estimates, while
        the anti-join it planned for `NOT EXISTS` from statistics taken before the pass's rows existed was a
        nested loop that unpacked every noted page once per row (4 s for 5,000 contacts). The hash is chosen
        while the noted ids are estimated to fit in `hash_mem` (8 MB by default), some 1.3 million of them.
        """
        mine = (SEEN.c.connection_id == self.connection.id, SEEN.c.record_table == CONTACTS.name)
        noted = func.json_array_elements_text(SEEN.c.external_ids).table_valued("value").alias("noted")
        seen = select(noted.c.value).select_from(SEEN).join(noted, true()).where(*mine, SEEN.c.pass_id == full_pass_id)
        result = self.session.execute(
            delete(CONTACTS).where(
                CONTACTS.c.connection_id == self.connection.id,
                or_(CONTACTS.c.full_pass_id.is_(None), CONTACTS.c.full_pass_id != full_pass_id),
                CONTACTS.c.external_id.not_in(seen),
            )
        )
        self.session.execute(delete(SEEN).where(*mine))
        return int(getattr(result, "rowcount", 0) or 0)

    def _saw(self, full_pass_id: str | None, external_ids: list[str]) -> None:
        """Note, for `delete_unseen`, the existing rows a full pass saw unchanged: one narrow row per page instead
        of an update of each (the stamp would rewrite every row a pass over unchanged data sees)."""
        if full_pass_id is None or not external_ids:
            return
        row = {
            "connection_id": self.connection.id,
            "record_table": CONTACTS.name,
            "pass_id": full_pass_id,
            "external_ids": external_ids,
        }
        self.session.execute(insert(SEEN).values(row))

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
        found = rows_by_external_id(self.session, self.connection.id, external_ids, columns)
        return {row["external_id"]: dict(row) for row in self.session.execute(found).mappings()}

    def _reindex(self, rows: list[tuple[Any, ...]], replaced: list[uuid.UUID]) -> None:
        """Write the email index of new and changed contacts; only changed ones have old entries to drop."""
        if replaced:
            self.session.execute(delete(ContactEmailRow).where(ContactEmailRow.contact_id.in_(replaced)))
        bulk_insert(self.session, EMAILS, EMAIL_COLUMNS, rows)

    def _delete(self, external_ids: set[str]) -> int:
        if not external_ids:
            return 0
        found = rows_by_external_id(self.session, self.connection.id, external_ids, [ContactRow.id])
        ids = list(self.session.scalars(found))
        if not ids:
            return 0
        result = self.session.execute(delete(ContactRow).where(ContactRow.id.in_(ids)))
        return int(getattr(result, "rowcount", 0) or 0)


SINKS: dict[str, type[ContactSink]] = {"contact": ContactSink}


def delete_resource_records(session: Session, connection_id: uuid.UUID, resource: str) -> int:
    """Delete the records one resource of a connection brought in (their email index goes with them by cascade).

    Records carry their resource once the record tables have the `resource` provenance column; until then no row
    can be told apart by resource, and nothing is deleted.
    """
    if "resource" not in CONTACTS.c:
        return 0
    result = session.execute(
        delete(CONTACTS).where(CONTACTS.c.connection_id == connection_id, CONTACTS.c["resource"] == resource)
    )
    return int(getattr(result, "rowcount", 0) or 0)
