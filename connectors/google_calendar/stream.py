"""A calendar's events: `events.list` per chosen calendar with its own sync token. A full pass (the first, and
after a 410) reads a window of time around now and must end with a `nextSyncToken`; later passes read changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from connectors import google_api
from connectors.base import Cursor, Page, Resource, StreamContext
from connectors.google_calendar.errors import classify
from connectors.google_calendar.wire import (
    CALENDARS_DECODER,
    EVENTS_DECODER,
    CalendarListPage,
    Event,
    EventDateTime,
    EventsPage,
)
from core.errors import ConnectorError
from crm.events import Attendee, CalendarEvent

T = TypeVar("T")

DEFAULT_ROOT = "https://www.googleapis.com"
MAX_PAGE_SIZE = 2500
CALENDAR_LIST_PAGE = 250
CANCELLED = "cancelled"
CONNECTOR = "google_calendar"


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recurrence_id(original: EventDateTime | None) -> str | None:
    """An exception's original start as RECURRENCE-ID: `YYYYMMDD` for all-day, a UTC time otherwise."""
    if original is None:
        return None
    if original.date:
        return original.date.replace("-", "")
    if original.date_time:
        at = datetime.fromisoformat(original.date_time.replace("Z", "+00:00"))
        if at.tzinfo is None:
            from crm.events import zone

            at = at.replace(tzinfo=zone(original.time_zone))
        return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return None


def to_event(item: Event, calendar_zone: str | None) -> CalendarEvent:
    start, end = item.start, item.end
    all_day = bool(start and start.date)
    return CalendarEvent(
        external_id=item.id,
        ical_uid=item.i_cal_u_i_d,
        recurrence_id=recurrence_id(item.original_start_time),
        master_id=item.recurring_event_id,
        status=item.status or "confirmed",
        summary=item.summary,
        description=item.description,
        location=item.location,
        all_day=all_day,
        start=(start.date if all_day else start.date_time) if start else None,
        end=(end.date if end and end.date else end.date_time if end else None),
        time_zone=(start.time_zone if start and start.time_zone else calendar_zone),
        recurrence=item.recurrence or (),
        organizer_email=item.organizer.email if item.organizer else None,
        sequence=item.sequence,
        attendees=tuple(
            Attendee(
                a.email,
                a.display_name,
                a.response_status,
                bool(a.organizer),
                bool(a.optional),
            )
            for a in item.attendees or ()
            if a.email
        ),
    )


def split_items(page: EventsPage) -> tuple[list[CalendarEvent], list[str]]:
    """Records and deleted ids: a cancelled event goes; a cancelled occurrence of a series stays, as an exception
    marked cancelled that hides that occurrence."""
    records: list[CalendarEvent] = []
    deleted: list[str] = []
    for item in page.items or ():
        if item.status == CANCELLED and not item.recurring_event_id:
            deleted.append(item.id)
        else:
            records.append(to_event(item, page.time_zone))
    return records, deleted


def call(ctx: StreamContext, make_request: Any, decoder: msgspec.json.Decoder[T]) -> T:
    result: T = ctx.attempt(
        lambda: google_api.execute(make_request, ctx.credentials, classify, decoder, ctx.sent, connector=CONNECTOR)
    )
    return result


def api(ctx: StreamContext, name: str) -> Any:
    """A Calendar resource (`events`, `calendarList`, `channels`), cached per thread; `api_endpoint` replaces the
    discovery's rootUrl and servicePath both."""
    root = ctx.base_url.rstrip("/") if ctx.base_url else DEFAULT_ROOT
    return google_api.resource("calendar", "v3", f"{root}/calendar/v3/", name)


def calendars(ctx: StreamContext) -> list[Resource]:
    """The account's calendar list, every page; the primary calendar is selected when first listed."""
    listing = api(ctx, "calendarList")
    found: list[Resource] = []
    page_token: str | None = None
    while True:
        params: dict[str, Any] = {"maxResults": CALENDAR_LIST_PAGE}
        if page_token:
            params["pageToken"] = page_token
        body: CalendarListPage = call(ctx, lambda params=params: listing.list(**params), CALENDARS_DECODER)
        for entry in body.items or ():
            if entry.deleted:
                continue
            detail = {
                "primary": bool(entry.primary),
                "time_zone": entry.time_zone,
                "access_role": entry.access_role,
                "selected_by_default": bool(entry.primary),
            }
            found.append(Resource(entry.id, entry.summary_override or entry.summary or entry.id, detail))
        page_token = body.next_page_token
        if not page_token:
            return found


class GoogleCalendarStream:
    def __init__(self, context: StreamContext) -> None:
        assert context.resource is not None, "a calendar's stream reads one chosen calendar"
        self.context = context
        self.calendar = context.resource.external_id
        self.events = api(context, "events")
        settings = context.settings
        self.page_size = int(getattr(settings, "page_size", 250))
        self.days_back = int(getattr(settings, "window_days_back", 365))
        self.days_ahead = int(getattr(settings, "window_days_ahead", 365))

    def read(self, cursor: Cursor | None) -> Iterator[Page]:
        sync_token = cursor.get("sync_token") if cursor else None
        page_token = cursor.get("page_token") if cursor else None
        full = not sync_token
        window: tuple[datetime, datetime] | None = None
        if full:
            if cursor and cursor.get("time_min") and cursor.get("time_max"):
                window = (datetime.fromisoformat(cursor["time_min"]), datetime.fromisoformat(cursor["time_max"]))
            else:
                now = datetime.now(UTC).replace(microsecond=0)
                window = (now - timedelta(days=self.days_back), now + timedelta(days=self.days_ahead))
        while True:
            body = self._list(sync_token, page_token, window)
            page_token = body.next_page_token
            records, deleted = split_items(body)
            last = not page_token
            checkpoint: dict[str, Any]
            if last:
                if not body.next_sync_token:
                    raise ConnectorError(
                        "Google Calendar ended the pass without a sync token; changes could not be followed"
                    )
                checkpoint = {"sync_token": body.next_sync_token}
            elif full:
                assert window is not None
                checkpoint = {
                    "page_token": page_token,
                    "time_min": window[0].isoformat(),
                    "time_max": window[1].isoformat(),
                }
            else:
                checkpoint = {"sync_token": sync_token, "page_token": page_token}
            yield Page(records, deleted, checkpoint, last=last, full=full, window=window)
            if last:
                return

    def _list(
        self, sync_token: str | None, page_token: str | None, window: tuple[datetime, datetime] | None
    ) -> EventsPage:
        # singleEvents=false: masters and exceptions, never instances; showDeleted: cancelled occurrences of live
        # series come along in the full pass too. The same parameters on every call, as Google asks.
        params: dict[str, Any] = {
            "calendarId": self.calendar,
            "maxResults": self.page_size,
            "singleEvents": False,
            "showDeleted": True,
        }
        if sync_token:
            params["syncToken"] = sync_token
        elif window is not None:
            params["timeMin"], params["timeMax"] = rfc3339(window[0]), rfc3339(window[1])
        if page_token:
            params["pageToken"] = page_token
        page: EventsPage = call(self.context, lambda: self.events.list(**params), EVENTS_DECODER)
        return page
