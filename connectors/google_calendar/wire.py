"""The Calendar API's answers as far as the hub reads them (msgspec structs, unknown fields skipped)."""

from __future__ import annotations

import msgspec


class EventDateTime(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    date: str | None = None
    date_time: str | None = None
    time_zone: str | None = None


class Person(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    email: str | None = None
    display_name: str | None = None


class Attendee(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    email: str | None = None
    display_name: str | None = None
    response_status: str | None = None
    organizer: bool | None = None
    optional: bool | None = None
    resource: bool | None = None


class Event(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    id: str
    status: str | None = None
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    start: EventDateTime | None = None
    end: EventDateTime | None = None
    recurrence: tuple[str, ...] | None = None
    recurring_event_id: str | None = None
    original_start_time: EventDateTime | None = None
    i_cal_u_i_d: str | None = msgspec.field(default=None, name="iCalUID")
    sequence: int | None = None
    updated: str | None = None
    organizer: Person | None = None
    attendees: tuple[Attendee, ...] | None = None
    html_link: str | None = None


class EventsPage(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    items: tuple[Event, ...] | None = None
    next_page_token: str | None = None
    next_sync_token: str | None = None
    time_zone: str | None = None


class CalendarListEntry(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    id: str
    summary: str | None = None
    summary_override: str | None = None
    time_zone: str | None = None
    access_role: str | None = None
    primary: bool | None = None
    deleted: bool | None = None


class CalendarListPage(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    items: tuple[CalendarListEntry, ...] | None = None
    next_page_token: str | None = None
    next_sync_token: str | None = None


class Channel(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    id: str
    resource_id: str | None = None
    expiration: str | int | None = None


EVENTS_DECODER = msgspec.json.Decoder(EventsPage)
CALENDARS_DECODER = msgspec.json.Decoder(CalendarListPage)
CHANNEL_DECODER = msgspec.json.Decoder(Channel)
EMPTY_DECODER = msgspec.json.Decoder(dict)
