"""Seeded calendars: every account's primary calendar, the demo accounts' calendars and events (a weekly series with
a moved and a deleted occurrence, all-day events, events in other time zones, attendees), and bulk events."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.google.calendar.store import Calendar, CalendarBook, Event, checked_datetime

ZONES = ("Europe/London", "Europe/Zurich", "America/New_York", "Asia/Tokyo")


def at(day: date, hour: int, minute: int, zone: str) -> dict[str, str]:
    return {"dateTime": f"{day.isoformat()}T{hour:02d}:{minute:02d}:00", "timeZone": zone}


def all_day(day: date) -> dict[str, str]:
    return {"date": day.isoformat()}


def guests(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"email": email, "responseStatus": status} for email, status in pairs]


def seed_calendars(book: CalendarBook, demo: bool, now: float | None = None) -> None:
    """Every account has a primary calendar; the demo ones (DEFAULT_ACCOUNTS) get more, with events around today."""
    now = time.time() if now is None else now
    zone = "Europe/London" if book.owner.startswith("ada") else book.rng.choice(ZONES)
    primary = book.calendars.get(book.owner) or book.add_calendar(book.owner, zone, now, primary=True)
    if not demo:
        return
    today = datetime.fromtimestamp(now, UTC).date()
    me = book.owner
    if book.owner.startswith("ada"):
        seed_ada(book, primary, today, me, now)
    else:
        team = book.add_calendar("Team", "America/New_York", now, description="Shared team calendar")
        book.add_event(
            primary,
            {
                "summary": "Compiler design review",
                "start": at(today + timedelta(days=2), 13, 0, "America/New_York"),
                "end": at(today + timedelta(days=2), 14, 0, "America/New_York"),
                "attendees": guests((me, "accepted"), ("ada@sandbox.test", "tentative")),
            },
            now,
        )
        book.add_event(
            team,
            {
                "summary": "Team offsite",
                "start": all_day(today + timedelta(days=30)),
                "end": all_day(today + timedelta(days=32)),
            },
            now,
        )


def seed_ada(book: CalendarBook, primary: Calendar, today: date, me: str, now: float) -> None:
    work = book.add_calendar("Work", "Europe/Zurich", now, description="Analytical Engines Ltd")
    holidays = book.add_calendar("Holidays in United Kingdom", "Europe/London", now, access_role="reader")
    book.add_event(
        primary,
        {
            "summary": "Intro call with Bob",
            "location": "Zoom",
            "start": at(today + timedelta(days=1), 10, 0, "Europe/London"),
            "end": at(today + timedelta(days=1), 10, 30, "Europe/London"),
            "attendees": guests((me, "accepted"), ("bob@example.com", "needsAction")),
        },
        now,
    )
    book.add_event(
        primary,
        {
            "summary": "Quarterly review (New York)",
            "start": at(today + timedelta(days=5), 14, 0, "America/New_York"),
            "end": at(today + timedelta(days=5), 15, 0, "America/New_York"),
            "attendees": guests(
                (me, "accepted"), ("grace@sandbox.test", "declined"), ("carol@example.org", "tentative")
            ),
        },
        now,
    )
    book.add_event(
        primary,
        {"summary": "Lunch with Charles", "start": at(today - timedelta(days=2), 12, 30, "Europe/London"),
         "end": at(today - timedelta(days=2), 13, 30, "Europe/London")},
        now,
    )  # fmt: skip
    book.add_event(
        primary,
        {
            "summary": "Conference",
            "start": all_day(today + timedelta(days=20)),
            "end": all_day(today + timedelta(days=23)),
        },
        now,
    )
    gone = book.add_event(
        primary,
        {"summary": "Cancelled dentist", "start": at(today + timedelta(days=3), 9, 0, "Europe/London"),
         "end": at(today + timedelta(days=3), 9, 30, "Europe/London")},
        now,
    )  # fmt: skip
    book.cancel_event(primary, gone.id, now)
    first = today - timedelta(days=14)
    weekly = book.add_event(
        work,
        {
            "summary": "Weekly sync",
            "start": at(first, 9, 30, "Europe/Zurich"),
            "end": at(first, 10, 0, "Europe/Zurich"),
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=20"],
            "attendees": guests(
                (me, "accepted"), ("grace@sandbox.test", "accepted"), ("bob@example.com", "needsAction")
            ),
        },
        now,
    )
    third = first + timedelta(days=21)
    book.change_occurrence(
        work,
        weekly.id,
        third.isoformat(),
        {"start": at(third, 11, 0, "Europe/Zurich"), "end": at(third, 11, 30, "Europe/Zurich")},
        now,
    )
    fourth = first + timedelta(days=28)
    book.change_occurrence(work, weekly.id, fourth.isoformat(), None, now)
    book.add_event(
        work,
        {
            "summary": "Standup",
            "start": at(first, 9, 0, "Europe/Zurich"),
            "end": at(first, 9, 15, "Europe/Zurich"),
            "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"],
        },
        now,
    )
    for offset, name in ((40, "Bank holiday"), (100, "Spring bank holiday")):
        day = today + timedelta(days=offset)
        book.add_event(holidays, {"summary": name, "start": all_day(day), "end": all_day(day + timedelta(days=1))}, now)


def seed_events(
    book: CalendarBook,
    calendar: Calendar,
    count: int,
    now: float,
    first_day: date,
    days: int,
    attendees: list[str] | None = None,
) -> int:
    """`count` single one-hour events spread over `days` days from `first_day`, written straight into the calendar
    (no per-event checks: this is for benchmarks of 10k events)."""
    zone = calendar.time_zone
    for index in range(count):
        day = first_day + timedelta(days=index % max(1, days))
        hour = 8 + index % 10
        event_id = book.new_id()
        event = Event(
            event_id,
            f"{event_id}@google.com",
            calendar.owner,
            created=now,
            summary=f"Event {index}",
            start=checked_datetime(at(day, hour, 0, zone), "start"),
            end=checked_datetime(at(day, hour, 45, zone), "end"),
            attendees=guests(*((email, "needsAction") for email in attendees or [])),
        )
        calendar.put(event, now)
    return count
