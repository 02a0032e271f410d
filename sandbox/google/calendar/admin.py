"""Admin API for the fake Google Calendar under /_sandbox/google/calendar/: calendars, events and their changes
(each change notifies the live channels watching the calendar), bulk seeding, sync-token expiry, channels and the
notifications sent."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from sandbox.google.calendar import render
from sandbox.google.calendar.seed import seed_events
from sandbox.google.calendar.store import (
    Calendar,
    CalendarBook,
    CalendarDataError,
    UnknownCalendar,
    UnknownEvent,
    span,
)
from sandbox.google.deps import GoogleDep
from sandbox.google.state import GoogleState

router = APIRouter(prefix="/_sandbox/google/calendar")


class CalendarIn(BaseModel):
    summary: str = Field(min_length=1)
    time_zone: str = "Europe/London"
    id: str | None = None
    access_role: str = "owner"
    description: str | None = None


class OccurrenceIn(BaseModel):
    original_start: str = Field(description="RFC 3339 start of the occurrence, or its local day (yyyy-mm-dd).")
    changes: dict[str, Any] | None = Field(default=None, description="None deletes the occurrence.")


class MoveIn(BaseModel):
    calendar: str = Field(description="The calendar the event moves to (events.move).")


class SeedIn(BaseModel):
    count: int = Field(ge=1, le=200_000)
    first_day: date | None = Field(default=None, description="Defaults to 180 days before today.")
    days: int = Field(default=365, ge=1)
    attendees: list[str] = Field(default_factory=list)


def book_of(google: GoogleState, email: str) -> CalendarBook:
    account = google.accounts.get(email)
    if account is None:
        raise HTTPException(404, f"no account {email}")
    return account.calendars


def calendar_of(book: CalendarBook, calendar_id: str) -> Calendar:
    try:
        return book.resolve(calendar_id)
    except UnknownCalendar:
        raise HTTPException(404, f"no calendar {calendar_id}") from None


def summary(calendar: Calendar) -> dict[str, Any]:
    return {
        "id": calendar.id,
        "summary": calendar.summary,
        "time_zone": calendar.time_zone,
        "primary": calendar.primary,
        "access_role": calendar.access_role,
        "deleted": calendar.deleted,
        "events": sum(1 for e in calendar.events.values() if not e.cancelled),
        "seq": calendar.seq,
        "sync_epoch": calendar.sync_epoch,
    }


def changed(google: GoogleState, calendar: Calendar) -> None:
    google.sender.changed(calendar.owner, calendar.id)


def guarded(action: Any) -> Any:
    try:
        return action()
    except UnknownEvent as missing:
        raise HTTPException(404, f"no event {missing}") from None
    except CalendarDataError as invalid:
        raise HTTPException(400, str(invalid)) from None


@router.get("/accounts/{email}/calendars")
async def list_calendars(email: str, google: GoogleDep) -> list[dict[str, Any]]:
    return [summary(c) for c in book_of(google, email).calendars.values()]


@router.post("/accounts/{email}/calendars", status_code=201)
async def add_calendar(email: str, body: CalendarIn, google: GoogleDep) -> dict[str, Any]:
    book = book_of(google, email)
    calendar = guarded(
        lambda: book.add_calendar(
            body.summary, body.time_zone, time.time(), body.id, False, body.access_role, body.description
        )
    )
    return summary(calendar)


@router.delete("/accounts/{email}/calendars/{calendar_id}", status_code=204)
async def remove_calendar(email: str, calendar_id: str, google: GoogleDep) -> None:
    book = book_of(google, email)
    calendar = calendar_of(book, calendar_id)
    book.remove_calendar(calendar, time.time())
    google.sender.changed(calendar.owner, calendar.id, "not_exists")


@router.post("/accounts/{email}/calendars/{calendar_id}/events", status_code=201)
async def add_event(email: str, calendar_id: str, fields: dict[str, Any], google: GoogleDep) -> dict[str, Any]:
    book = book_of(google, email)
    calendar = calendar_of(book, calendar_id)
    event = guarded(lambda: book.add_event(calendar, fields, time.time()))
    changed(google, calendar)
    return render.event(event, calendar)


@router.get("/accounts/{email}/calendars/{calendar_id}/events/{event_id}")
async def get_event(email: str, calendar_id: str, event_id: str, google: GoogleDep) -> dict[str, Any]:
    calendar = calendar_of(book_of(google, email), calendar_id)
    return render.event(guarded(lambda: calendar.get(event_id)), calendar)


@router.patch("/accounts/{email}/calendars/{calendar_id}/events/{event_id}")
async def update_event(
    email: str, calendar_id: str, event_id: str, changes: dict[str, Any], google: GoogleDep
) -> dict[str, Any]:
    book = book_of(google, email)
    calendar = calendar_of(book, calendar_id)
    event = guarded(lambda: book.update_event(calendar, event_id, changes, time.time()))
    changed(google, calendar)
    return render.event(event, calendar)


@router.delete("/accounts/{email}/calendars/{calendar_id}/events/{event_id}", status_code=204)
async def cancel_event(email: str, calendar_id: str, event_id: str, google: GoogleDep) -> None:
    book = book_of(google, email)
    calendar = calendar_of(book, calendar_id)
    guarded(lambda: book.cancel_event(calendar, event_id, time.time()))
    changed(google, calendar)


@router.post("/accounts/{email}/calendars/{calendar_id}/events/{event_id}/move")
async def move_event(email: str, calendar_id: str, event_id: str, body: MoveIn, google: GoogleDep) -> dict[str, Any]:
    book = book_of(google, email)
    source, target = calendar_of(book, calendar_id), calendar_of(book, body.calendar)
    event = guarded(lambda: book.move_event(source, event_id, target, time.time()))
    changed(google, source)
    changed(google, target)
    return render.event(event, target)


@router.post("/accounts/{email}/calendars/{calendar_id}/events/{event_id}/occurrences")
async def change_occurrence(
    email: str, calendar_id: str, event_id: str, body: OccurrenceIn, google: GoogleDep
) -> dict[str, Any]:
    """Change one occurrence of a series (an exception), or delete it (`changes` null: a cancelled exception)."""
    book = book_of(google, email)
    calendar = calendar_of(book, calendar_id)
    exception = guarded(
        lambda: book.change_occurrence(calendar, event_id, body.original_start, body.changes, time.time())
    )
    changed(google, calendar)
    return render.event(exception, calendar)


@router.post("/accounts/{email}/calendars/{calendar_id}/events/seed")
async def seed(email: str, calendar_id: str, body: SeedIn, google: GoogleDep) -> dict[str, Any]:
    book = book_of(google, email)
    calendar = calendar_of(book, calendar_id)
    started = time.perf_counter()
    today = datetime.now(UTC).date()
    first = body.first_day or date.fromordinal(today.toordinal() - 180)
    count = seed_events(book, calendar, body.count, time.time(), first, body.days, body.attendees)
    for event in calendar.events.values():  # rendered now, so the first full sync costs what later ones do
        render.encoded(event, calendar)
        span(event, calendar.time_zone)
    return {"seeded": count, "seconds": round(time.perf_counter() - started, 3)}


@router.post("/accounts/{email}/sync-tokens/expire", status_code=204)
async def expire_all(email: str, google: GoogleDep) -> None:
    """Every Calendar sync token of the account (its calendars' events and its calendar list) now gives 410."""
    book_of(google, email).expire_sync_tokens()


@router.post("/accounts/{email}/calendars/{calendar_id}/sync-tokens/expire", status_code=204)
async def expire_calendar(email: str, calendar_id: str, google: GoogleDep) -> None:
    book = book_of(google, email)
    book.expire_sync_tokens(calendar_of(book, calendar_id))


@router.get("/channels")
async def list_channels(google: GoogleDep, account: str | None = None) -> list[dict[str, Any]]:
    now = time.time()
    return [c.record(now) for c in google.channels.values() if account in (None, c.account)]


def channel_of(google: GoogleState, channel_id: str) -> Any:
    found = [c for c in google.channels.values() if c.id == channel_id]
    if not found:
        raise HTTPException(404, f"no channel {channel_id}")
    return found[-1]


@router.post("/channels/{channel_id}/expire", status_code=204)
async def expire_channel(channel_id: str, google: GoogleDep) -> None:
    channel_of(google, channel_id).expiration_ms = int(time.time() * 1000)


@router.post("/channels/{channel_id}/notify")
async def notify(channel_id: str, google: GoogleDep, count: int = 1) -> list[dict[str, Any]]:
    """`count` `exists` messages on a channel, as a burst of changes would send (nothing if it is not live)."""
    channel = channel_of(google, channel_id)
    if not channel.live(time.time()):
        return []
    return [google.sender.send(channel, "exists").record() for _ in range(count)]


@router.get("/notifications")
async def list_notifications(
    google: GoogleDep, channel_id: str | None = None, account: str | None = None, after: int = 0
) -> list[dict[str, Any]]:
    return [
        n.record()
        for n in google.notifications
        if n.id > after and channel_id in (None, n.channel_id) and account in (None, n.account)
    ]
