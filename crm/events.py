"""The event record kind: calendar events as iCalendar sees them (UID, RECURRENCE-ID, RRULE and EXDATE), one row
per source, its sink, and its API (`/api/v1/events`).

Series are stored as their master (with the RRULE/EXDATE lines) and their exceptions, never as expanded
instances: the API expands occurrences at read time when asked for a time range. The same meeting seen through
two accounts is grouped when read, by (iCalUID, recurrence id), with each copy listed as a source; attendees are
shown with the CRM contacts their addresses match, among those the reader may see.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import time_ns
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from dateutil.rrule import rruleset, rrulestr
from psycopg.errors import UniqueViolation
from pydantic import BaseModel, Field
from sqlalchemy import (
    MetaData,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session

from core.models import utcnow
from crm.kinds import BadCursor, RecordKind, RecordQuery
from crm.models import ContactEmailRow, ContactRow, EventAttendeeRow, EventRow
from crm.sink import Counts, Owner, bulk_insert, delete_unseen, encode_json
from crm.suppression import like_pattern, normalised, suppressed, text_pattern

EVENTS: Table = EventRow.__table__  # type: ignore[assignment]
ATTENDEES: Table = EventAttendeeRow.__table__  # type: ignore[assignment]
CANCELLED = "cancelled"
ID_ARRAY = ARRAY(UUID(as_uuid=False))
MAX_OCCURRENCES = 5000
"""Occurrences one series may contribute to one read: a guard against a daily rule over a range of centuries."""


class Attendee(msgspec.Struct, frozen=True, gc=False):
    email: str
    display_name: str | None = None
    response_status: str | None = None
    organizer: bool = False
    optional: bool = False


class CalendarEvent(msgspec.Struct, frozen=True, gc=False):
    """One event as a source holds it, in iCalendar's terms.

    `external_id` is the provider's id (Google's event id, a CalDAV object's href). A series master carries its
    `recurrence` lines (RRULE, EXDATE, RDATE; no DTSTART); an exception carries `recurrence_id` (its original
    start: `YYYYMMDD` for all-day, `YYYYMMDDTHHMMSSZ` otherwise) and its series' `master_id`; a cancelled exception
    hides that occurrence. All-day events hold dates (`start`/`end` as `YYYY-MM-DD`, end exclusive); timed ones
    an RFC 3339 time with its `time_zone`.
    """

    external_id: str
    ical_uid: str | None = None
    recurrence_id: str | None = None
    master_id: str | None = None
    status: str = "confirmed"
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    all_day: bool = False
    start: str | None = None
    end: str | None = None
    time_zone: str | None = None
    recurrence: tuple[str, ...] = ()
    organizer_email: str | None = None
    sequence: int | None = None
    attendees: tuple[Attendee, ...] = ()
    whole_series: bool = False
    """A master that arrives with all its exceptions in the same page (a CalDAV object holds them together):
    its exceptions the page does not bring are gone."""


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def moment(value: str, all_day: bool, tz: str | None) -> datetime:
    """An event time as an aware datetime: an all-day date at midnight in the event's zone."""
    if all_day:
        return datetime.combine(date.fromisoformat(value[:10]), time(), zone(tz))
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone(tz))


def recurrence_key(when: datetime, all_day: bool) -> str:
    """RECURRENCE-ID's value form: a date for all-day series, a UTC time otherwise."""
    if all_day:
        return when.strftime("%Y%m%d")
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def rules(event: CalendarEvent | EventRow, start: datetime) -> rruleset:
    lines = list(event.recurrence or ())
    text = "\n".join(
        line for line in lines if line.split(":", 1)[0].split(";", 1)[0] in ("RRULE", "EXDATE", "RDATE", "EXRULE")
    )
    found = rrulestr(text, dtstart=start, forceset=True, ignoretz=False, unfold=True)
    assert isinstance(found, rruleset)
    return found


def series_start(all_day: bool, start: datetime) -> datetime:
    """Where a series' rule starts: all-day series expand on naive dates (their UNTIL and EXDATE are dates),
    timed ones in their zone."""
    return start.replace(tzinfo=None) if all_day else start


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def span(event: CalendarEvent) -> tuple[datetime | None, datetime | None]:
    """The time an event (or a whole series) occupies, in UTC, for the full pass's window: a series without an
    end runs forever (None)."""
    if event.start is None:
        if event.recurrence_id:
            at = original(event.recurrence_id)
            return at, at
        return None, None
    start = moment(event.start, event.all_day, event.time_zone).astimezone(UTC)
    end = moment(event.end, event.all_day, event.time_zone).astimezone(UTC) if event.end else start
    if event.recurrence:
        first = series_start(event.all_day, moment(event.start, event.all_day, event.time_zone))
        lines = " ".join(event.recurrence).upper()
        if "COUNT=" not in lines and "UNTIL=" not in lines:
            return start, None
        try:
            last = None
            for last in rules(event, first):  # noqa: B007 (a finite rule)
                pass
        except (ValueError, TypeError):
            return start, None
        if last is not None:
            end = max(end, as_utc(last) + (end - start))
    if event.recurrence_id:
        at = original(event.recurrence_id)
        start, end = min(start, at), max(end, at)
    return start, end


def original(recurrence_id: str) -> datetime:
    if "T" in recurrence_id:
        return datetime.strptime(recurrence_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return datetime.strptime(recurrence_id, "%Y%m%d").replace(tzinfo=UTC)


def _text(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _has_offset(value: str) -> bool:
    """An RFC 3339 time that names its offset (`Z` or `+hh:mm`), which PostgreSQL reads as the same instant."""
    return value.endswith(("Z", "z")) or (len(value) > 19 and value[-6] in "+-" and value[-3] == ":")


def _instant(value: str | None, tz: str | None) -> str | None:
    """A timed event's start or end as text for a `timestamptz` column: as given when it names its offset, else
    read in the event's zone."""
    if value is None:
        return None
    return value if _has_offset(value) else moment(value, False, tz).isoformat()


def _columns(event: CalendarEvent) -> tuple[Any, ...]:
    """The event's own columns in `UPDATED_COLUMNS` order up to `sequence`, as text COPY takes (dates, times and
    JSON); the common single timed event needs no datetime built at all."""
    start_date = end_date = start_at = end_at = None
    if event.start is not None:
        if event.all_day:
            start_date = event.start[:10]
            end_date = event.end[:10] if event.end else None
        else:
            start_at = _instant(event.start, event.time_zone)
            end_at = _instant(event.end, event.time_zone)
    if event.recurrence or event.recurrence_id or event.all_day or start_at is None:
        low, high = span(event)
        span_start, span_end = _text(low), _text(high)
    else:  # a single timed event occupies its own start to end
        span_start, span_end = start_at, end_at or start_at
    return (
        event.ical_uid,
        event.recurrence_id,
        event.master_id,
        event.status,
        event.summary,
        event.description,
        event.location,
        event.all_day,
        start_date,
        end_date,
        start_at,
        end_at,
        event.time_zone,
        encode_json(event.recurrence).decode() if event.recurrence else "[]",
        span_start,
        span_end,
        event.organizer_email.strip().lower() if event.organizer_email else None,
        event.sequence,
    )


UPDATED_COLUMNS = (
    "ical_uid",
    "recurrence_id",
    "master_id",
    "status",
    "summary",
    "description",
    "location",
    "all_day",
    "start_date",
    "end_date",
    "start_at",
    "end_at",
    "time_zone",
    "recurrence",
    "span_start",
    "span_end",
    "organizer_email",
    "sequence",
    "updated_at",
    "full_pass_id",
)


STAGE = "crm_events_page"
EVENT_COLUMNS = (
    "id",
    "workspace_id",
    "connection_id",
    "provider",
    "resource",
    "external_id",
    "created_at",
    *UPDATED_COLUMNS,
)
ATTENDEE_COLUMNS = ("event_id", "email", "workspace_id", "display_name", "response_status", "organizer", "optional")
STAGE_TABLE = Table(STAGE, MetaData())
ALL_COLUMNS = ", ".join(EVENT_COLUMNS)
UPSERT = (  # an event listed again keeps its row (and id); a pass's stamp stays unless a new pass stamps it
    "ON CONFLICT (connection_id, resource, external_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in UPDATED_COLUMNS if c != "full_pass_id")
    + ", full_pass_id = coalesce(excluded.full_pass_id, crm_events.full_pass_id) "
    "RETURNING id::text, external_id, (xmax = 0)"
)
FEW_ROWS = 50
"""Pages up to this many events are upserted from one VALUES list, larger ones through COPY and a staging table."""


def time_ordered_uuids(count: int) -> list[str]:
    """`count` UUIDs of version 7 (RFC 9562) as text: the time in milliseconds first, then a counter, then random
    bits, so a page's new rows land at the right edge of the primary key's and `(workspace_id, id)`'s indexes
    instead of at random places in them (COPYing 10k events measured about a tenth faster)."""
    now = time_ns() // 1_000_000
    digits = os.urandom(8 * count).hex()
    return [
        f"{now + i // 4096:012x}7{i % 4096:03x}{'89ab'[int(digits[16 * i], 16) & 3]}{digits[16 * i + 1 : 16 * i + 16]}"
        for i in range(count)
    ]


@dataclass(frozen=True)
class NewEventRows:
    """A page's events as new rows (COPY tuples in `EVENT_COLUMNS` order, the full pass's stamp still to add),
    the last listing of each event id only, with each row's attendees in `ATTENDEE_COLUMNS` order."""

    events: list[tuple[Any, ...]]
    attendees: list[list[tuple[Any, ...]]]

    @property
    def external_ids(self) -> list[str]:
        return [row[5] for row in self.events]


ADDRESS_IN_TEXT = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
FREE_TEXT = ("summary", "description", "location")


def without_suppressed_people(
    session: Session, workspace_id: str, records: Sequence[CalendarEvent]
) -> tuple[Sequence[CalendarEvent], int]:
    """The write-time check: an event keeps its place, but a suppressed address is dropped from its attendees and
    its organizer, and cut from its free text; returns the events and how many attendees or organizers went."""
    texts = [getattr(r, name) or "" for r in records for name in FREE_TEXT]
    found = [
        *(a.email for r in records for a in r.attendees),
        *(r.organizer_email or "" for r in records),
        *(address for text in texts if "@" in text for address in ADDRESS_IN_TEXT.findall(text)),
    ]
    blocked = {normalised(a) for a in suppressed(session, workspace_id, found)}
    if not blocked:
        return records, 0
    cut = re.compile("|".join(re.escape(address) for address in blocked), re.IGNORECASE)
    dropped = 0
    kept: list[CalendarEvent] = []
    for record in records:
        attendees = tuple(a for a in record.attendees if normalised(a.email) not in blocked)
        organizer = None if normalised(record.organizer_email or "") in blocked else record.organizer_email
        dropped += len(record.attendees) - len(attendees) + (organizer != record.organizer_email)
        scrubbed = {
            name: cut.sub("[removed]", value) for name in FREE_TEXT if (value := getattr(record, name)) is not None
        }
        kept.append(msgspec.structs.replace(record, attendees=attendees, organizer_email=organizer, **scrubbed))
    return kept, dropped


class EventSink:
    """Writes one page of events for one (connection, calendar), in the caller's transaction: an upsert by
    external id, the attendees replaced, and deletions (a deleted master takes its exceptions along)."""

    tables: ClassVar[tuple[Table, ...]] = (EVENTS, ATTENDEES)

    def __init__(self, session: Session, owner: Owner) -> None:
        self.session, self.owner = session, owner

    @staticmethod
    def prepare(owner: Owner, records: Sequence[CalendarEvent]) -> NewEventRows:
        """Every event (its last listing on the page) as a new row with its attendees; pure, so the engine runs it
        on the reading thread while the page before is written. Ids and times are text, as COPY takes them."""
        latest = list({record.external_id: record for record in records}.values())
        ids = time_ordered_uuids(len(latest))
        stamped = utcnow().isoformat()
        head = (owner.workspace_id, str(owner.connection_id), owner.provider, owner.resource)
        workspace = owner.workspace_id
        events = [
            (event_id, *head, record.external_id, stamped, *_columns(record), stamped)
            for event_id, record in zip(ids, latest, strict=True)
        ]
        attendees = []
        for event_id, record in zip(ids, latest, strict=True):
            people: dict[str, tuple[Any, ...]] = {}
            for attendee in record.attendees:
                email = attendee.email.strip().lower()
                if email:
                    people[email] = (
                        event_id,
                        email,
                        workspace,
                        attendee.display_name,
                        attendee.response_status,
                        attendee.organizer,
                        attendee.optional,
                    )
            attendees.append(list(people.values()))
        return NewEventRows(events, attendees)

    def apply(
        self,
        records: Sequence[CalendarEvent],
        deleted_ids: Iterable[str],
        full_pass_id: str | None,
        ready: NewEventRows | None = None,
        fresh: bool = False,
    ) -> Counts:
        """Upsert a page and delete `deleted_ids`; `ready` is `prepare(records)` if it was built ahead. `fresh`: this
        (connection, calendar) held no event when the pass began, so the page is first tried as all new."""
        counts = Counts()
        allowed, counts.suppressed = without_suppressed_people(self.session, self.owner.workspace_id, records)
        if ready is None or allowed is not records:  # prepared ahead from what suppression has since cut
            ready = self.prepare(self.owner, allowed)
        records = allowed
        if ready.events:
            stamp = (full_pass_id,)
            rows = [row + stamp for row in ready.events]
            if fresh and self._all_new(rows, ready):
                counts.created = len(rows)
            else:
                written = self._upsert(rows)
                ids = {external_id: row_id for row_id, external_id, _ in written}
                counts.created = sum(1 for _, _, created in written if created)
                counts.updated = len(written) - counts.created
                self.session.execute(
                    delete(ATTENDEES).where(
                        ATTENDEES.c.event_id == any_(bindparam("event_ids", list(ids.values()), type_=ID_ARRAY))
                    )
                )
                bulk_insert(
                    self.session,
                    ATTENDEES,
                    ATTENDEE_COLUMNS,
                    [
                        (ids[external_id], *attendee[1:])
                        for external_id, people in zip(ready.external_ids, ready.attendees, strict=True)
                        for attendee in people
                    ],
                )
            counts.deleted += self._drop_stale_exceptions({record.external_id: record for record in records})
        gone = set(deleted_ids) - set(ready.external_ids)
        if gone:
            result = self.session.execute(
                delete(EVENTS).where(
                    EVENTS.c.connection_id == self.owner.connection_id,
                    EVENTS.c.resource == self.owner.resource,
                    or_(EVENTS.c.external_id.in_(gone), EVENTS.c.master_id.in_(gone)),
                )
            )
            counts.deleted += int(getattr(result, "rowcount", 0) or 0)
        return counts

    def _drop_stale_exceptions(self, latest: dict[str, CalendarEvent]) -> int:
        """Exceptions of a `whole_series` master that its page no longer brings (an override turned into an
        EXDATE, say) are deleted."""
        masters = [external_id for external_id, record in latest.items() if record.whole_series]
        if not masters:
            return 0
        result = self.session.execute(
            delete(EVENTS).where(
                EVENTS.c.connection_id == self.owner.connection_id,
                EVENTS.c.resource == self.owner.resource,
                EVENTS.c.master_id.in_(masters),
                EVENTS.c.external_id.not_in(list(latest)),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def _all_new(self, rows: list[tuple[Any, ...]], ready: NewEventRows) -> bool:
        """Write the page as new rows without looking any up, under a savepoint: False, with nothing written, if
        one exists after all (an event listed on two pages of a pass); the caller then upserts the page."""
        try:
            with self.session.begin_nested():
                bulk_insert(self.session, EVENTS, EVENT_COLUMNS, rows)
                bulk_insert(
                    self.session, ATTENDEES, ATTENDEE_COLUMNS, [a for people in ready.attendees for a in people]
                )
        except UniqueViolation:
            return False
        return True

    def _upsert(self, rows: list[tuple[Any, ...]]) -> list[tuple[str, str, bool]]:
        """One INSERT ... ON CONFLICT for the page: a few rows as one VALUES list (an incremental sync's change),
        more through COPY into a temporary table first (a statement with a page of bound rows spent most of its
        time in the driver splitting the SQL text)."""
        raw = self.session.connection().connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            if len(rows) <= FEW_ROWS:
                one = f"({', '.join(['%s'] * len(EVENT_COLUMNS))})"
                cursor.execute(
                    f"INSERT INTO crm_events ({ALL_COLUMNS}) VALUES {', '.join([one] * len(rows))} {UPSERT}",  # noqa: S608
                    [value for row in rows for value in row],
                )
                return [(row[0], row[1], bool(row[2])) for row in cursor.fetchall()]
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (LIKE crm_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            bulk_insert(self.session, STAGE_TABLE, EVENT_COLUMNS, rows)
            cursor.execute(f"INSERT INTO crm_events ({ALL_COLUMNS}) SELECT {ALL_COLUMNS} FROM {STAGE} {UPSERT}")  # noqa: S608
            found = [(row[0], row[1], bool(row[2])) for row in cursor.fetchall()]
            cursor.execute(f"TRUNCATE {STAGE}")
        return found

    def delete_unseen(self, full_pass_id: str, window: tuple[datetime, datetime] | None = None) -> int:
        """After a complete full pass: remove this calendar's events it did not see; a pass over a time window
        removes only those whose time falls inside that window (a series without an end reaches into it)."""
        if window is None:
            return delete_unseen(self.session, EVENTS, self.owner, full_pass_id)
        low, high = window
        result = self.session.execute(
            delete(EVENTS).where(
                EVENTS.c.connection_id == self.owner.connection_id,
                EVENTS.c.resource == self.owner.resource,
                or_(EVENTS.c.full_pass_id.is_(None), EVENTS.c.full_pass_id != full_pass_id),
                EVENTS.c.span_start.is_not(None),
                EVENTS.c.span_start < high,
                or_(EVENTS.c.span_end.is_(None), EVENTS.c.span_end > low),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


class EventFilters(BaseModel):
    calendar: str | None = Field(default=None, description="Only events of this calendar (its resource id).")
    start: datetime | None = Field(
        default=None, description="With `end`: the occurrences in [start, end), series expanded at read time."
    )
    end: datetime | None = Field(default=None, description="The end of the time range (exclusive).")


def events_query(query: RecordQuery) -> Select[Any]:
    chosen = select(EventRow)
    filters = query.filters
    assert isinstance(filters, EventFilters)
    if filters.calendar:
        chosen = chosen.where(EventRow.resource == filters.calendar)
    return chosen


def _time(row: EventRow, which: str) -> str | None:
    if row.all_day:
        value = row.start_date if which == "start" else row.end_date
        return value.isoformat() if value else None
    at = row.start_at if which == "start" else row.end_at
    if at is None:
        return None
    return at.astimezone(zone(row.time_zone)).isoformat()


def source_view(row: EventRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "connection_id": str(row.connection_id),
        "provider": row.provider,
        "calendar": row.resource,
        "external_id": row.external_id,
        "status": row.status,
    }


def event_view(row: EventRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "connection_id": str(row.connection_id),
        "provider": row.provider,
        "calendar": row.resource,
        "external_id": row.external_id,
        "ical_uid": row.ical_uid,
        "recurrence_id": row.recurrence_id,
        "master_id": row.master_id,
        "status": row.status,
        "summary": row.summary,
        "description": row.description,
        "location": row.location,
        "all_day": row.all_day,
        "start": _time(row, "start"),
        "end": _time(row, "end"),
        "time_zone": row.time_zone,
        "recurrence": row.recurrence,
        "organizer_email": row.organizer_email,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _encode(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise BadCursor("cursor is not one this API issued") from exc


def _group_key(row: EventRow) -> tuple[str, str]:
    return (row.ical_uid or f"id:{row.id}", row.recurrence_id or "")


@dataclass
class Meeting:
    key: tuple[str, str]
    rows: list[EventRow]


def _attendees(session: Session, query: RecordQuery, rows: Sequence[EventRow]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Each event's attendees with the ids of the CRM contacts their address matches, among the contacts of the
    connections the reader may read (the same rule as every read)."""
    ids = [row.id for row in rows]
    if not ids:
        return {}
    found = session.execute(select(EventAttendeeRow).where(EventAttendeeRow.event_id.in_(ids))).scalars().all()
    emails = {attendee.email for attendee in found}
    matches: dict[str, list[str]] = {}
    if emails:
        linked = session.execute(
            select(ContactEmailRow.email, ContactRow.id)
            .join(ContactRow, ContactRow.id == ContactEmailRow.contact_id)
            .where(
                ContactEmailRow.workspace_id == query.workspace_id,
                ContactEmailRow.email.in_(emails),
                ContactRow.connection_id.in_(query.readable()),
            )
            .order_by(ContactRow.id)
        ).all()
        for email, contact_id in linked:
            matches.setdefault(email, []).append(str(contact_id))
    by_event: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for attendee in sorted(found, key=lambda a: a.email):
        by_event.setdefault(attendee.event_id, []).append(
            {
                "email": attendee.email,
                "display_name": attendee.display_name,
                "response_status": attendee.response_status,
                "organizer": attendee.organizer,
                "optional": attendee.optional,
                "contacts": matches.get(attendee.email, []),
            }
        )
    return by_event


def _meeting_view(rows: list[EventRow], people: dict[uuid.UUID, list[dict[str, Any]]]) -> dict[str, Any]:
    """A meeting as its first source (by id) shows it, with every source and the attendees of all of them."""
    ordered = sorted(rows, key=lambda row: str(row.id))
    view = event_view(ordered[0])
    attendees: dict[str, dict[str, Any]] = {}
    for row in ordered:
        for attendee in people.get(row.id, []):
            attendees.setdefault(attendee["email"], attendee)
    view["attendees"] = [attendees[email] for email in sorted(attendees)]
    view["sources"] = [source_view(row) for row in ordered]
    return view


def _readable_rows(query: RecordQuery) -> Select[Any]:
    chosen = events_query(query).where(
        EventRow.workspace_id == query.workspace_id, EventRow.connection_id.in_(query.readable())
    )
    if query.connection_id is not None:
        chosen = chosen.where(EventRow.connection_id == query.connection_id)
    return chosen


def events_page(session: Session, record_kind: RecordKind, query: RecordQuery) -> dict[str, Any]:
    filters = query.filters
    assert isinstance(filters, EventFilters)
    if filters.start is not None or filters.end is not None:
        if filters.start is None or filters.end is None or filters.end <= filters.start:
            raise BadCursor("a time range needs both start and end, with start before end")
        return occurrences_page(session, query, _aware(filters.start), _aware(filters.end))
    return meetings_page(session, query)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def meetings_page(session: Session, query: RecordQuery) -> dict[str, Any]:
    """Masters, single events and exceptions, grouped into meetings by (iCalUID, recurrence id), keyset-paged by
    that key."""
    uid = func.coalesce(EventRow.ical_uid, func.concat("id:", cast(EventRow.id, String)))
    rid = func.coalesce(EventRow.recurrence_id, "")
    keys = _readable_rows(query).with_only_columns(uid.label("uid"), rid.label("rid")).distinct()
    if query.cursor:
        after = _decode(query.cursor)
        if not (isinstance(after, list) and len(after) == 2):
            raise BadCursor("cursor is not one this API issued")
        keys = keys.where(or_(uid > after[0], and_(uid == after[0], rid > after[1])))
    wanted = session.execute(keys.order_by("uid", "rid").limit(query.limit + 1)).all()
    more = len(wanted) > query.limit
    wanted = wanted[: query.limit]
    if not wanted:
        return {"events": [], "next_cursor": None}
    pairs = [(row.uid, row.rid) for row in wanted]
    rows = list(session.scalars(_readable_rows(query).where(tuple_(uid, rid).in_(pairs))))
    meetings: dict[tuple[str, str], list[EventRow]] = {}
    for row in rows:
        meetings.setdefault(_group_key(row), []).append(row)
    people = _attendees(session, query, rows)
    return {
        "events": [_meeting_view(meetings[pair], people) for pair in pairs if pair in meetings],
        "next_cursor": _encode(list(pairs[-1])) if more else None,
    }


def _expand(master: EventRow, low: datetime, high: datetime, hidden: set[str]) -> list[tuple[datetime, datetime]]:
    """The occurrences of a series in [low, high): (start, end) in the series' zone, minus EXDATEs and the
    recurrence ids its exceptions take over."""
    start = (
        datetime.combine(master.start_date, time(), zone(master.time_zone))
        if master.all_day and master.start_date
        else (master.start_at.astimezone(zone(master.time_zone)) if master.start_at else None)
    )
    if start is None:
        return []
    if master.all_day:
        end = datetime.combine(master.end_date, time(), zone(master.time_zone)) if master.end_date else start
    else:
        end = master.end_at.astimezone(zone(master.time_zone)) if master.end_at else start
    length = end - start
    if master.all_day:
        start = start.replace(tzinfo=None)
        low, high = low.astimezone(UTC).replace(tzinfo=None), high.astimezone(UTC).replace(tzinfo=None)
    out: list[tuple[datetime, datetime]] = []
    try:
        found = rules(master, start)
        for at in found.between(low - length - timedelta(seconds=1), high, inc=True):
            if at + length <= low or at >= high:
                continue
            if recurrence_key(at, master.all_day) in hidden:
                continue
            out.append((at, at + length))
            if len(out) >= MAX_OCCURRENCES:
                break
    except (ValueError, TypeError):
        return [(start, start + length)] if start < high and start + length > low else []
    return out


def occurrences_page(session: Session, query: RecordQuery, low: datetime, high: datetime) -> dict[str, Any]:
    """The occurrences in [low, high), expanded at read time from masters and exceptions, grouped into meetings
    across sources, ordered by start, keyset-paged by (start, iCalUID, recurrence id)."""
    rows = list(
        session.scalars(
            _readable_rows(query).where(
                EventRow.span_start.is_not(None),
                EventRow.span_start < high,
                or_(EventRow.span_end.is_(None), EventRow.span_end >= low),
            )
        )
    )
    taken: dict[tuple[uuid.UUID, str, str], set[str]] = {}
    for row in rows:
        if row.master_id and row.recurrence_id:
            taken.setdefault((row.connection_id, row.resource, row.master_id), set()).add(row.recurrence_id)
    found: dict[tuple[str, str, str], list[tuple[EventRow, str, str]]] = {}
    for row in rows:
        if row.status == CANCELLED:
            continue
        if row.recurrence:
            hidden = taken.get((row.connection_id, row.resource, row.external_id), set())
            for start, end in _expand(row, low, high, hidden):
                rid = recurrence_key(start, row.all_day)
                shown = (
                    (start.date().isoformat(), end.date().isoformat())
                    if row.all_day
                    else (
                        start.isoformat(),
                        end.isoformat(),
                    )
                )
                key = (as_utc(start).isoformat(), row.ical_uid or f"id:{row.id}", rid)
                found.setdefault(key, []).append((row, *shown))
            continue
        begins = _time(row, "start")
        ends = _time(row, "end")
        if begins is None:
            continue
        at = moment(begins, row.all_day, row.time_zone)
        until = moment(ends, row.all_day, row.time_zone) if ends else at
        if until <= low or at >= high:
            continue
        key = (at.astimezone(UTC).isoformat(), row.ical_uid or f"id:{row.id}", row.recurrence_id or "")
        found.setdefault(key, []).append((row, begins, ends or begins))
    ordered = sorted(found)
    if query.cursor:
        after = _decode(query.cursor)
        if not (isinstance(after, list) and len(after) == 3):
            raise BadCursor("cursor is not one this API issued")
        ordered = [key for key in ordered if list(key) > after]
    chosen = ordered[: query.limit]
    more = len(ordered) > query.limit
    people = _attendees(session, query, [row for key in chosen for row, _, _ in found[key]])
    events = []
    for key in chosen:
        sources = found[key]
        view = _meeting_view([row for row, _, _ in sources], people)
        first = sorted(sources, key=lambda item: str(item[0].id))[0]
        view["start"], view["end"] = first[1], first[2]
        view["recurrence_id"] = key[2] or None
        view["occurrence"] = True
        events.append(view)
    return {"events": events, "next_cursor": _encode(list(chosen[-1])) if more and chosen else None}


def forget_person(session: Session, workspace_id: str, address: str) -> dict[str, int]:
    """An event keeps its place without the person: their attendee row goes, the organizer is cleared, and the
    address is cut from the free text."""
    attendees = session.execute(
        delete(ATTENDEES).where(ATTENDEES.c.workspace_id == workspace_id, ATTENDEES.c.email == address)
    )
    organizers = session.execute(
        update(EVENTS)
        .where(EVENTS.c.workspace_id == workspace_id, func.lower(EVENTS.c.organizer_email) == address)
        .values(organizer_email=None)
    )
    texts = 0
    for name in FREE_TEXT:
        column = EVENTS.c[name]
        found = session.execute(
            update(EVENTS)
            .where(EVENTS.c.workspace_id == workspace_id, func.lower(column).like(like_pattern(address)))
            .values({name: func.regexp_replace(column, text_pattern(address), "[removed]", "gi")})
        )
        texts += int(getattr(found, "rowcount", 0) or 0)
    return {
        "event_attendees": int(getattr(attendees, "rowcount", 0) or 0),
        "event_organizers": int(getattr(organizers, "rowcount", 0) or 0),
        "event_texts": texts,
    }


def event_views(session: Session, query: RecordQuery, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Each source row as the change feed shows it: the event with its own attendees."""
    people = _attendees(session, query, [row[0] for row in rows])
    return [{**event_view(row[0]), "attendees": people.get(row[0].id, [])} for row in rows]


KIND = RecordKind(
    name="calendar_event",
    segment="events",
    sink=EventSink,
    table=EVENTS,
    filters=EventFilters,
    query=events_query,
    view=event_view,
    lister=events_page,
    forget=forget_person,
    views=event_views,
)
