"""The calendar event kind through its sink (as a run writes pages) and `/api/v1/events` over HTTP: series stored
as masters and exceptions and expanded at read time, all-day dates kept as dates, one meeting from two accounts
with two sources, attendees joined to the contacts the reader may see, and a windowed full pass that deletes only
inside its window and its own calendar."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Connection, Sharing
from crm.events import EVENTS, Attendee, CalendarEvent, EventSink
from crm.kinds import kind
from crm.models import EventAttendeeRow, EventRow
from crm.records import Contact, EmailAddress
from crm.sink import Owner

WEEKLY = CalendarEvent(
    "series1",
    ical_uid="series1@google.com",
    summary="Weekly sync",
    start="2026-03-04T10:00:00+01:00",
    end="2026-03-04T10:30:00+01:00",
    time_zone="Europe/Zurich",
    recurrence=("RRULE:FREQ=WEEKLY;BYDAY=WE;COUNT=6",),
    attendees=(Attendee("Bob@Example.com", "Bob", "accepted"), Attendee("ada@example.com", "Ada", "needsAction")),
)
# The second occurrence (11 March) cancelled; the third (18 March) moved to 14:00.
CANCELLED = CalendarEvent(
    "series1_20260311T090000Z",
    ical_uid="series1@google.com",
    recurrence_id="20260311T090000Z",
    master_id="series1",
    status="cancelled",
)
MOVED = CalendarEvent(
    "series1_20260318T090000Z",
    ical_uid="series1@google.com",
    recurrence_id="20260318T090000Z",
    master_id="series1",
    summary="Weekly sync (moved)",
    start="2026-03-18T14:00:00+01:00",
    end="2026-03-18T14:30:00+01:00",
    time_zone="Europe/Zurich",
)
ALL_DAY = CalendarEvent(
    "holiday", ical_uid="holiday@google.com", summary="Holiday", all_day=True, start="2026-03-05", end="2026-03-06",
    time_zone="Pacific/Auckland",
)  # fmt: skip


def connection(session: Session, workspace: str, user: str, sharing: str = Sharing.OWNER.value) -> Connection:
    found = Connection(
        workspace_id=workspace,
        user_id=user,
        auth_provider="google",
        provider_account_id=uuid.uuid4().hex,
        account_email=f"{uuid.uuid4().hex[:6]}@example.com",
        sharing=sharing,
    )
    session.add(found)
    session.flush()
    return found


def events(api: str, token: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = httpx.get(f"{api}/api/v1/events", params=query, headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found.extend(body["events"])
        cursor = body["next_cursor"]
        if not cursor:
            return found


def test_series_expand_at_read_time_without_cancelled_occurrences(
    sessions: sessionmaker[Session], live_api: str, user_token: Callable[..., str]
) -> None:
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    with transaction(sessions) as session:
        mine = connection(session, workspace, "ada")
        owner = Owner.of(mine, str(uuid.uuid4()))
        EventSink(session, owner).apply([WEEKLY, CANCELLED, MOVED, ALL_DAY], [], "pass-1")
    token = user_token("ada", workspace)

    stored = events(live_api, token)
    assert sorted((e["external_id"], e["recurrence_id"], e["status"]) for e in stored) == [
        ("holiday", None, "confirmed"),
        ("series1", None, "confirmed"),
        ("series1_20260311T090000Z", "20260311T090000Z", "cancelled"),
        ("series1_20260318T090000Z", "20260318T090000Z", "confirmed"),
    ]
    master = next(e for e in stored if e["external_id"] == "series1")
    assert master["recurrence"] == ["RRULE:FREQ=WEEKLY;BYDAY=WE;COUNT=6"]
    assert master["start"] == "2026-03-04T10:00:00+01:00"
    holiday = next(e for e in stored if e["external_id"] == "holiday")
    assert (holiday["all_day"], holiday["start"], holiday["end"]) == (True, "2026-03-05", "2026-03-06")

    listed = events(live_api, token, start="2026-03-01T00:00:00Z", end="2026-04-01T00:00:00Z")
    assert [(e["start"], e["summary"]) for e in listed] == [
        ("2026-03-04T10:00:00+01:00", "Weekly sync"),
        ("2026-03-05", "Holiday"),
        ("2026-03-18T14:00:00+01:00", "Weekly sync (moved)"),
        ("2026-03-25T10:00:00+01:00", "Weekly sync"),
    ], "11 March is cancelled, 18 March moved"
    assert [e["recurrence_id"] for e in listed if e["external_id"].startswith("series1")] == [
        "20260304T090000Z",
        "20260318T090000Z",
        "20260325T090000Z",
    ]
    # Zurich leaves winter time on 29 March: the series keeps 10:00 local.
    april = events(live_api, token, start="2026-04-01T00:00:00Z", end="2026-05-01T00:00:00Z")
    assert [e["start"] for e in april] == ["2026-04-01T10:00:00+02:00", "2026-04-08T10:00:00+02:00"]


def test_one_meeting_from_two_accounts_has_two_sources_and_contacts_the_reader_may_see(
    sessions: sessionmaker[Session], live_api: str, user_token: Callable[..., str]
) -> None:
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    with transaction(sessions) as session:
        work, home = connection(session, workspace, "ada"), connection(session, workspace, "ada")
        hidden = connection(session, workspace, "eve")  # not shared: its contacts are not Ada's to see
        shared = connection(session, workspace, "carl", Sharing.WORKSPACE.value)
        for source in (work, home):
            EventSink(session, Owner.of(source, str(uuid.uuid4()))).apply([WEEKLY], [], None)
        contacts = kind("contact").sink
        contacts(session, Owner.of(hidden)).apply(
            [Contact("people/e", emails=(EmailAddress("bob@example.com"),))], [], None, None
        )
        contacts(session, Owner.of(shared)).apply(
            [Contact("people/c", emails=(EmailAddress("BOB@example.com"),))], [], None, None
        )
        rows = session.execute(select(EVENTS.c.id).where(EVENTS.c.workspace_id == workspace)).all()
        assert len(rows) == 2, "one row per source"
    stored = events(live_api, user_token("ada", workspace))
    assert len(stored) == 1
    meeting = stored[0]
    assert sorted(s["connection_id"] for s in meeting["sources"]) == sorted([str(work.id), str(home.id)])
    bob = next(a for a in meeting["attendees"] if a["email"] == "bob@example.com")
    with sessions() as session:
        visible = session.scalar(
            kind("contact")
            .table.select()
            .where(kind("contact").table.c.connection_id == shared.id)
            .with_only_columns(kind("contact").table.c.id)
        )
    assert bob["contacts"] == [str(visible)] and bob["response_status"] == "accepted"
    ada = next(a for a in meeting["attendees"] if a["email"] == "ada@example.com")
    assert ada["contacts"] == []
    # Another user of the workspace sees neither copy (contacts and calendars are not shared by default).
    assert events(live_api, user_token("eve", workspace)) == []


def test_a_windowed_full_pass_deletes_only_inside_its_window_and_calendar(sessions: sessionmaker[Session]) -> None:
    old = CalendarEvent("old", start="2024-01-10T10:00:00Z", end="2024-01-10T11:00:00Z")
    inside = CalendarEvent("inside", start="2026-02-10T10:00:00Z", end="2026-02-10T11:00:00Z")
    kept = CalendarEvent("kept", start="2026-02-11T10:00:00Z", end="2026-02-11T11:00:00Z")
    forever = CalendarEvent(
        "forever", start="2020-01-01T10:00:00Z", end="2020-01-01T11:00:00Z", recurrence=("RRULE:FREQ=YEARLY",)
    )
    with transaction(sessions) as session:
        mine = connection(session, f"ws-{uuid.uuid4().hex[:8]}", "ada")
        first, other = Owner.of(mine, str(uuid.uuid4())), Owner.of(mine, str(uuid.uuid4()))
        EventSink(session, first).apply([old, inside, kept, forever], [], None)
        EventSink(session, other).apply([inside], [], None)
    window = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC))
    with transaction(sessions) as session:
        sink = EventSink(session, first)
        sink.apply([kept], [], "pass-2")
        assert sink.delete_unseen("pass-2", window=window) == 2  # "inside", and the series reaching into it
    with sessions() as session:
        left = session.execute(
            select(EVENTS.c.resource, EVENTS.c.external_id).where(EVENTS.c.connection_id == mine.id)
        ).all()
    assert sorted(left) == sorted([(first.resource, "old"), (first.resource, "kept"), (other.resource, "inside")])


def test_a_first_pass_that_lists_an_event_twice_falls_back_to_the_upsert(sessions: sessionmaker[Session]) -> None:
    """A fresh calendar's pages are written as new rows without a lookup; an event a later page of the same pass
    lists again (Google may, when it changes mid-pass) makes that page an upsert: one row, its latest listing,
    its attendees replaced, nothing doubled."""
    first = CalendarEvent(
        "a",
        summary="Before",
        start="2026-02-10T10:00:00Z",
        end="2026-02-10T11:00:00Z",
        attendees=(Attendee("x@e.com"),),
    )
    again = CalendarEvent(
        "a", summary="After", start="2026-02-10T12:00:00Z", end="2026-02-10T13:00:00Z", attendees=(Attendee("y@e.com"),)
    )
    other = CalendarEvent(
        "b", summary="Other", start="2026-02-11T10:00:00", end="2026-02-11T11:00:00", time_zone="Asia/Tokyo"
    )
    with transaction(sessions) as session:
        owner = Owner.of(connection(session, f"ws-{uuid.uuid4().hex[:8]}", "ada"), str(uuid.uuid4()))
        written = EventSink(session, owner).apply([first], [], "pass-1", fresh=True)
        assert (written.created, written.updated) == (1, 0)
    with transaction(sessions) as session:
        written = EventSink(session, owner).apply([again, other], [], "pass-1", fresh=True)
        assert (written.created, written.updated) == (1, 1)
    with sessions() as session:
        rows = {
            row.external_id: row for row in session.scalars(select(EventRow).where(EventRow.resource == owner.resource))
        }
        people = session.scalars(select(EventAttendeeRow.email).where(EventAttendeeRow.event_id == rows["a"].id)).all()
    assert sorted(rows) == ["a", "b"] and rows["a"].summary == "After" and list(people) == ["y@e.com"]
    assert rows["a"].start_at == datetime(2026, 2, 10, 12, tzinfo=UTC)
    assert rows["b"].start_at == datetime(2026, 2, 11, 1, tzinfo=UTC), "a time without an offset is read in its zone"
    assert rows["b"].span_start == rows["b"].start_at and rows["a"].full_pass_id == "pass-1"
    assert uuid.UUID(str(rows["b"].id)).version == 7
