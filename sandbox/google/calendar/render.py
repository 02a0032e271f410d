"""Calendar resources in Google's JSON shape: calendar list entries, events, instances and cancelled minima."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import msgspec

from sandbox.google.calendar.store import Calendar, Event, Instance, instances, rfc3339, span, when

DEFAULT_REMINDERS = [{"method": "popup", "minutes": 10}]
Item = tuple[int, Any]  # (position within the event's items, body: a dict or its encoded JSON)


def person(email: str, calendar: Calendar) -> dict[str, Any]:
    if email == calendar.id and not calendar.primary:
        return {"email": email, "displayName": calendar.summary, "self": True}
    return {"email": email, "self": True} if email in (calendar.owner, calendar.id) else {"email": email}


def attendee(item: dict[str, Any], event: Event, calendar: Calendar) -> dict[str, Any]:
    body = dict(item)
    if item["email"] == event.organizer:
        body["organizer"] = True
    if item["email"] == calendar.owner:
        body["self"] = True
    return body


def cancelled(event: Event) -> dict[str, Any]:
    """What Google guarantees of a deleted event: its id, and for a deleted occurrence the series and the time."""
    body: dict[str, Any] = {"kind": "calendar#event", "etag": event.etag, "id": event.id, "status": "cancelled"}
    if event.recurring_event_id and event.original_start:
        body.update(recurringEventId=event.recurring_event_id, originalStartTime=dict(event.original_start))
    return body


def html_link(event_id: str, calendar: Calendar) -> str:
    eid = base64.urlsafe_b64encode(f"{event_id} {calendar.id}".encode()).decode().rstrip("=")
    return f"https://www.google.com/calendar/event?eid={eid}"


def event(event: Event, calendar: Calendar) -> dict[str, Any]:
    """The event's body (shared: do not change it), made again only after the event changed."""
    body: dict[str, Any] = event.cached("body", lambda: event_body(event, calendar))
    return body


def encoded(item: Event, calendar: Calendar) -> msgspec.Raw:
    """The event's body as JSON, for list pages: a 10k-event calendar's full sync encodes each event once."""
    raw: msgspec.Raw = item.cached("json", lambda: msgspec.Raw(msgspec.json.encode(event(item, calendar))))
    return raw


def event_body(event: Event, calendar: Calendar) -> dict[str, Any]:
    if event.cancelled:
        return cancelled(event)
    body: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": event.etag,
        "id": event.id,
        "status": event.status,
        "htmlLink": html_link(event.id, calendar),
        "created": rfc3339(event.created),
        "updated": rfc3339(event.updated),
    }
    for name in ("summary", "description", "location"):
        value = getattr(event, name)
        if value:
            body[name] = value
    body.update(
        creator=person(event.organizer, calendar),
        organizer=person(event.organizer, calendar),
        start=dict(event.start),
        end=dict(event.end),
    )
    if event.recurrence:
        body["recurrence"] = list(event.recurrence)
    if event.recurring_event_id and event.original_start:
        body.update(recurringEventId=event.recurring_event_id, originalStartTime=dict(event.original_start))
    body.update(iCalUID=event.ical_uid, sequence=event.sequence)
    if event.attendees:
        body["attendees"] = [attendee(a, event, calendar) for a in event.attendees]
    body.update(reminders={"useDefault": True}, eventType="default")
    return body


def instance(master_body: dict[str, Any], master: Event, occurrence: Instance, calendar: Calendar) -> dict[str, Any]:
    body = {k: v for k, v in master_body.items() if k != "recurrence"}
    body.update(
        id=occurrence.id,
        htmlLink=html_link(occurrence.id, calendar),
        start=dict(occurrence.start),
        end=dict(occurrence.end),
        recurringEventId=master.id,
        originalStartTime=dict(occurrence.original_start),
    )
    return body


def in_window(item: Event, calendar: Calendar, time_min: datetime | None, time_max: datetime | None) -> bool:
    """timeMin bounds an event's end (exclusive), timeMax its start (exclusive); a series by its whole span."""
    if time_min is None and time_max is None:
        return True
    begins, ends = span(item, calendar.time_zone)
    return (time_max is None or begins < time_max) and (time_min is None or ends is None or ends > time_min)


def expanded(master: Event, calendar: Calendar, time_min: datetime | None, time_max: datetime | None) -> Iterator[Item]:
    """A live series' instances in the window, those replaced by an exception left out (the exception is an item of
    its own). Positions count every instance, so a page token's position stays put when exceptions appear."""
    body = event(master, calendar)
    for position, occurrence in enumerate(instances(master, calendar.time_zone, time_max)):
        if occurrence.id in calendar.events:
            continue
        if time_min is not None and when(occurrence.end, calendar.time_zone) <= time_min:
            continue
        yield position, instance(body, master, occurrence, calendar)


def full_items(
    item: Event,
    calendar: Calendar,
    single_events: bool,
    show_deleted: bool,
    time_min: datetime | None,
    time_max: datetime | None,
) -> Iterator[Item]:
    """An event's items in a full listing."""
    master = calendar.events.get(item.recurring_event_id) if item.recurring_event_id else None
    if item.cancelled:
        live_series_hole = master is not None and not master.cancelled and not single_events
        if (show_deleted or live_series_hole) and in_window(item, calendar, time_min, time_max):
            yield 0, cancelled(item)
        return
    if single_events and item.recurrence:
        yield from expanded(item, calendar, time_min, time_max)
        return
    if in_window(item, calendar, time_min, time_max):
        yield 0, encoded(item, calendar)


def changed_items(item: Event, calendar: Calendar, single_events: bool) -> Iterator[Item]:
    """An event's items in an incremental listing: every change, a deleted one as its minimum."""
    if single_events and item.recurrence and not item.cancelled:
        yield from expanded(item, calendar, None, None)
        return
    yield 0, encoded(item, calendar)


def calendar_entry(calendar: Calendar) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "calendar#calendarListEntry",
        "etag": calendar.etag,
        "id": calendar.id,
        "summary": calendar.summary,
        "timeZone": calendar.time_zone,
        "colorId": calendar.color_id,
        "backgroundColor": calendar.background_color,
        "foregroundColor": "#000000",
        "selected": True,
        "accessRole": calendar.access_role,
        "defaultReminders": DEFAULT_REMINDERS if calendar.access_role in ("owner", "writer") else [],
        "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
    }
    if calendar.description:
        body["description"] = calendar.description
    if calendar.primary:
        body["primary"] = True
        body["notificationSettings"] = {
            "notifications": [
                {"type": "eventCreation", "method": "email"},
                {"type": "eventChange", "method": "email"},
                {"type": "eventCancellation", "method": "email"},
            ]
        }
    if calendar.deleted:
        body["deleted"] = True
    return body


def events_envelope(calendar: Calendar) -> dict[str, Any]:
    return {
        "kind": "calendar#events",
        "etag": calendar.etag,
        "summary": calendar.summary,
        "description": calendar.description or "",
        "updated": rfc3339(calendar.updated),
        "timeZone": calendar.time_zone,
        "accessRole": calendar.access_role,
        "defaultReminders": DEFAULT_REMINDERS if calendar.access_role in ("owner", "writer") else [],
    }
