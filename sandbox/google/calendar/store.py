"""One sandbox account's Google Calendar data: its calendars, their events (masters, exceptions and the tombstones of
cancelled ones) and the change sequences that page and sync tokens point into.

Each calendar numbers its changes: an event's `seq` is the number of its latest change, and `Calendar.events` is
kept in `seq` order (a change moves the event to the end), so "everything changed after N" is a tail of the dict.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rruleset, rrulestr

BASE32HEX = string.digits + "abcdefghijklmnopqrstuv"
RESPONSE_STATUSES = frozenset({"needsAction", "declined", "tentative", "accepted"})
EVENT_STATUSES = frozenset({"confirmed", "tentative", "cancelled"})
ACCESS_ROLES = frozenset({"freeBusyReader", "reader", "writer", "writerWithoutPrivateAccess", "owner"})
EDITABLE = frozenset({"summary", "description", "location", "start", "end", "attendees", "recurrence", "status"})
# UNVERIFIED: how far Google expands a series with no end when `timeMax` is not given, and how many instances at most.
OPEN_SERIES_HORIZON = timedelta(days=2 * 366)
MAX_INSTANCES = 5000
COLORS = (("1", "#ac725e"), ("7", "#42d692"), ("9", "#7bd148"), ("14", "#9fe1e7"), ("16", "#4986e7"))


class CalendarDataError(ValueError):
    """Event or calendar fields given to the admin API that Google would not store."""


class UnknownCalendar(LookupError):
    pass


class UnknownEvent(LookupError):
    pass


def rfc3339(moment: float) -> str:
    """Google's `updated`/`created` form: UTC with milliseconds."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(moment * 1000) % 1000:03d}Z"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarDataError(f"unknown time zone {name!r}") from None


def parse_datetime(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CalendarDataError(f"not an RFC 3339 date-time: {value!r}") from None
    return moment


def when(value: dict[str, str], default_zone: str) -> datetime:
    """An EventDateTime as an aware datetime: a date is midnight in the calendar's zone."""
    if "date" in value:
        day = date.fromisoformat(value["date"])
        return datetime(day.year, day.month, day.day, tzinfo=zone(default_zone))
    moment = parse_datetime(value["dateTime"])
    return moment if moment.tzinfo else moment.replace(tzinfo=zone(value.get("timeZone", default_zone)))


def wire_datetime(moment: datetime) -> str:
    """`dateTime` as Google writes it: seconds, and the offset of the event's zone."""
    text = moment.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if moment.utcoffset() == timedelta(0) and moment.tzinfo is UTC else text


def checked_datetime(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or ("date" in value) == ("dateTime" in value):
        raise CalendarDataError(f"{name} needs exactly one of date or dateTime")
    unknown = set(value) - {"date", "dateTime", "timeZone"}
    if unknown:
        raise CalendarDataError(f"unknown {name} fields: {', '.join(sorted(unknown))}")
    if "date" in value:
        try:
            date.fromisoformat(value["date"])
        except ValueError:
            raise CalendarDataError(f"{name}.date is not yyyy-mm-dd") from None
        return {"date": value["date"]}
    moment = parse_datetime(value["dateTime"])
    if "timeZone" in value:
        zone(value["timeZone"])
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone(value["timeZone"]))
        else:
            moment = moment.astimezone(zone(value["timeZone"]))
        return {"dateTime": wire_datetime(moment), "timeZone": value["timeZone"]}
    if moment.tzinfo is None:
        raise CalendarDataError(f"{name}.dateTime needs an offset or a timeZone")
    return {"dateTime": wire_datetime(moment)}


def checked_attendees(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise CalendarDataError("attendees must be a list")
    attendees = []
    for item in value:
        if isinstance(item, str):
            item = {"email": item}
        if not isinstance(item, dict) or "@" not in str(item.get("email", "")):
            raise CalendarDataError("each attendee needs an email")
        unknown = set(item) - {"email", "displayName", "responseStatus", "optional", "organizer", "resource", "comment"}
        if unknown:
            raise CalendarDataError(f"unknown attendee fields: {', '.join(sorted(unknown))}")
        status = item.get("responseStatus", "needsAction")
        if status not in RESPONSE_STATUSES:
            raise CalendarDataError(f"responseStatus must be one of {sorted(RESPONSE_STATUSES)}")
        attendees.append({**item, "responseStatus": status})
    return attendees


def instance_stamp(original: datetime, all_day: bool) -> str:
    return original.strftime("%Y%m%d") if all_day else original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class Event:
    id: str
    ical_uid: str
    organizer: str
    created: float
    updated: float = 0.0
    seq: int = 0
    status: str = "confirmed"
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    start: dict[str, str] = field(default_factory=dict)
    end: dict[str, str] = field(default_factory=dict)
    recurrence: list[str] | None = None
    recurring_event_id: str | None = None
    original_start: dict[str, str] | None = None
    attendees: list[dict[str, Any]] = field(default_factory=list)
    sequence: int = 0
    # (seq, what) caches of what renders it (its JSON, its span): a change gives the event a new seq
    cache: dict[str, tuple[int, Any]] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """State files keep the event, not its caches (encoded JSON does not pickle)."""
        return {**vars(self), "cache": {}}

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        hit = self.cache.get(key)
        if hit is not None and hit[0] == self.seq:
            return hit[1]
        value = make()
        self.cache[key] = (self.seq, value)
        return value

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def all_day(self) -> bool:
        return "date" in self.start

    @property
    def etag(self) -> str:
        return f'"{int(self.updated * 1000) * 1000 + self.seq % 1000}"'

    def apply(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - EDITABLE
        if unknown:
            raise CalendarDataError(f"unknown or read-only event fields: {', '.join(sorted(unknown))}")
        if "status" in changes and changes["status"] not in EVENT_STATUSES:
            raise CalendarDataError(f"status must be one of {sorted(EVENT_STATUSES)}")
        for name in ("summary", "description", "location", "status"):
            if name in changes:
                setattr(self, name, changes[name])
        if "start" in changes or "end" in changes:
            self.start = checked_datetime(changes.get("start", self.start), "start")
            self.end = checked_datetime(changes.get("end", self.end), "end")
            self.sequence += 1
        if "attendees" in changes:
            self.attendees = checked_attendees(changes["attendees"])
        if "recurrence" in changes:
            self.recurrence = list(changes["recurrence"]) or None
        if self.all_day != ("date" in self.end):
            raise CalendarDataError("start and end must both be dates or both date-times")
        if self.recurrence and not self.all_day and "timeZone" not in self.start:
            raise CalendarDataError("a recurring event needs start.timeZone")


@dataclass(frozen=True)
class Instance:
    """One occurrence of a series, as `singleEvents=true` shows it (before exceptions replace it)."""

    id: str
    original_start: dict[str, str]
    start: dict[str, str]
    end: dict[str, str]
    begins: datetime


@dataclass
class Calendar:
    id: str
    owner: str
    summary: str
    time_zone: str
    primary: bool = False
    access_role: str = "owner"
    description: str | None = None
    color_id: str = "1"
    background_color: str = "#ac725e"
    created: float = 0.0
    updated: float = 0.0
    deleted: bool = False
    list_seq: int = 0
    seq: int = 0
    sync_epoch: int = 0
    events: dict[str, Event] = field(default_factory=dict)

    def put(self, event: Event, now: float) -> Event:
        """Record a change of `event`: a new change number, `updated` now, and the event moved to the tail."""
        self.seq += 1
        event.seq, event.updated = self.seq, now
        self.events.pop(event.id, None)
        self.events[event.id] = event
        self.updated = now
        return event

    def changed_after(self, seq: int) -> list[Event]:
        ordered = list(self.events.values())
        return ordered[bisect.bisect_right(ordered, seq, key=lambda e: e.seq) :]

    def get(self, event_id: str) -> Event:
        event = self.events.get(event_id)
        if event is None:
            raise UnknownEvent(event_id)
        return event

    def exceptions_of(self, master_id: str) -> list[Event]:
        return [e for e in self.events.values() if e.recurring_event_id == master_id]

    @property
    def etag(self) -> str:
        return f'"{int(self.updated * 1000) * 1000 + self.seq % 1000}"'


def recurrence_set(event: Event, default_zone: str) -> rruleset:
    first = when(event.start, default_zone)
    dtstart = first.replace(tzinfo=None) if event.all_day else first
    lines = "\n".join(event.recurrence or [])
    try:
        rules: rruleset = rrulestr(lines, dtstart=dtstart, forceset=True, unfold=True)
    except (ValueError, TypeError) as error:
        raise CalendarDataError(f"invalid recurrence: {error}") from None
    return rules


def open_ended(event: Event) -> bool:
    rules = [line for line in event.recurrence or [] if line.startswith("RRULE")]
    return any("COUNT=" not in line and "UNTIL=" not in line for line in rules)


def instances(event: Event, default_zone: str, until: datetime | None = None) -> Iterator[Instance]:
    """The occurrences of a series master starting before `until` (a horizon for open-ended series)."""
    first = when(event.start, default_zone)
    duration = when(event.end, default_zone) - first
    if until is None and open_ended(event):
        until = datetime.now(UTC) + OPEN_SERIES_HORIZON
    event_zone = zone(event.start.get("timeZone", default_zone))
    for count, occurrence in enumerate(recurrence_set(event, default_zone)):
        if count >= MAX_INSTANCES:
            return
        if event.all_day:
            day = occurrence.date()
            begins = datetime(day.year, day.month, day.day, tzinfo=zone(default_zone))
            if until is not None and begins >= until:
                return
            original = {"date": day.isoformat()}
            end_day = day + timedelta(days=max(1, duration.days))
            yield Instance(
                f"{event.id}_{instance_stamp(occurrence, True)}",
                original,
                original,
                {"date": end_day.isoformat()},
                begins,
            )
            continue
        local = occurrence.astimezone(event_zone)
        if until is not None and local >= until:
            return
        start = {"dateTime": wire_datetime(local), "timeZone": event.start["timeZone"]}
        end = {
            "dateTime": wire_datetime((local + duration).astimezone(event_zone)),
            "timeZone": event.start["timeZone"],
        }
        yield Instance(f"{event.id}_{instance_stamp(local, False)}", start, start, end, local)


def span(event: Event, default_zone: str) -> tuple[datetime, datetime | None]:
    """When an event (a whole series, for a master) begins and ends; None for a series without end."""
    result: tuple[datetime, datetime | None] = event.cached("span", lambda: measured_span(event, default_zone))
    return result


def measured_span(event: Event, default_zone: str) -> tuple[datetime, datetime | None]:
    begins = (
        when(event.original_start or event.start, default_zone) if event.cancelled else when(event.start, default_zone)
    )
    if event.cancelled and not event.start:
        return begins, begins + timedelta(seconds=1)
    ends = when(event.end, default_zone)
    if not event.recurrence:
        return begins, ends
    if open_ended(event):
        return begins, None
    last = None
    for occurrence in instances(event, default_zone):
        last = occurrence
    return begins, (ends if last is None else when(last.end, default_zone))


@dataclass
class CalendarBook:
    """An account's calendar list and a seeded id source."""

    owner: str
    rng: random.Random
    calendars: dict[str, Calendar] = field(default_factory=dict)
    list_seq: int = 0
    list_epoch: int = 0

    def new_id(self, size: int = 26) -> str:
        return "".join(self.rng.choice(BASE32HEX) for _ in range(size))

    def resolve(self, calendar_id: str) -> Calendar:
        if calendar_id == "primary":
            calendar_id = self.owner
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            raise UnknownCalendar(calendar_id)
        return calendar

    def touch(self, calendar: Calendar, now: float) -> None:
        """A change the calendar list shows: a new list change number, the entry moved to the tail."""
        self.list_seq += 1
        calendar.list_seq, calendar.updated = self.list_seq, now
        self.calendars.pop(calendar.id, None)
        self.calendars[calendar.id] = calendar

    def add_calendar(
        self,
        summary: str,
        time_zone: str,
        now: float,
        calendar_id: str | None = None,
        primary: bool = False,
        access_role: str = "owner",
        description: str | None = None,
    ) -> Calendar:
        zone(time_zone)
        if access_role not in ACCESS_ROLES:
            raise CalendarDataError(f"accessRole must be one of {sorted(ACCESS_ROLES)}")
        if primary:
            calendar_id = self.owner
        calendar_id = calendar_id or f"{self.new_id()}@group.calendar.google.com"
        if calendar_id in self.calendars and not self.calendars[calendar_id].deleted:
            raise CalendarDataError(f"calendar {calendar_id} exists")
        color_id, color = COLORS[len(self.calendars) % len(COLORS)]
        calendar = Calendar(
            calendar_id,
            self.owner,
            summary,
            time_zone,
            primary=primary,
            access_role=access_role,
            description=description,
            color_id=color_id,
            background_color=color,
            created=now,
        )
        self.touch(calendar, now)
        return calendar

    def remove_calendar(self, calendar: Calendar, now: float) -> None:
        """The user leaves (or deletes) a calendar: the list shows it deleted; its events are gone."""
        calendar.deleted = True
        calendar.sync_epoch += 1
        self.touch(calendar, now)

    def add_event(self, calendar: Calendar, fields: dict[str, Any], now: float) -> Event:
        fields = dict(fields)
        event_id = str(fields.pop("id", "") or self.new_id())
        if len(event_id) < 5 or any(c not in BASE32HEX for c in event_id):
            raise CalendarDataError("event ids are 5-1024 base32hex characters (a-v, 0-9)")
        existing = calendar.events.get(event_id)
        if existing is not None and not existing.cancelled:
            raise CalendarDataError(f"event {event_id} exists")
        ical_uid = str(fields.pop("iCalUID", "") or f"{event_id}@google.com")
        organizer = str(fields.pop("organizer", "") or self.owner)
        if "start" not in fields or "end" not in fields:
            raise CalendarDataError("an event needs start and end")
        event = Event(event_id, ical_uid, organizer, created=now)
        event.apply(fields)
        event.sequence = 0
        if event.recurrence:
            next(instances(event, calendar.time_zone), None)  # refuse a rule dateutil cannot read
        return calendar.put(event, now)

    def update_event(self, calendar: Calendar, event_id: str, changes: dict[str, Any], now: float) -> Event:
        event = calendar.get(event_id)
        if event.cancelled:
            raise UnknownEvent(event_id)
        event.apply(changes)
        return calendar.put(event, now)

    def cancel_event(self, calendar: Calendar, event_id: str, now: float) -> Event:
        """Delete an event; a series takes its exceptions with it."""
        event = calendar.get(event_id)
        if event.cancelled:
            raise UnknownEvent(event_id)
        event.status = "cancelled"
        for exception in calendar.exceptions_of(event_id):
            if not exception.cancelled:
                exception.status = "cancelled"
                calendar.put(exception, now)
        return calendar.put(event, now)

    def move_event(self, source: Calendar, event_id: str, target: Calendar, now: float) -> Event:
        """events.move: the source keeps a cancelled event with only its id; the target gets the event."""
        event = source.get(event_id)
        if event.cancelled or event.recurring_event_id:
            raise UnknownEvent(event_id)
        moved = Event(**{**vars(event), "cache": {}})
        copies = [Event(**{**vars(exception), "cache": {}}) for exception in source.exceptions_of(event_id)]
        self.cancel_event(source, event_id, now)
        target.put(moved, now)
        for copy in copies:
            target.put(copy, now)
        return moved

    def occurrence(self, calendar: Calendar, master_id: str, original_start: str) -> tuple[Event, Instance]:
        """The occurrence of a series starting at `original_start` (RFC 3339), or on that local day (yyyy-mm-dd)."""
        master = calendar.get(master_id)
        if master.cancelled or not master.recurrence:
            raise UnknownEvent(master_id)
        by_day = "T" not in original_start
        target = date.fromisoformat(original_start) if by_day else parse_datetime(original_start)
        for instance in instances(master, calendar.time_zone):
            if by_day and instance.begins.date() == target:
                return master, instance
            if not by_day and instance.begins == target:
                return master, instance
        raise UnknownEvent(f"{master_id} has no occurrence at {original_start}")

    def change_occurrence(
        self, calendar: Calendar, master_id: str, original_start: str, changes: dict[str, Any] | None, now: float
    ) -> Event:
        """An exception of a series: the occurrence changed (`changes`), or deleted (None): a cancelled exception."""
        master, instance = self.occurrence(calendar, master_id, original_start)
        exception = calendar.events.get(instance.id)
        if exception is None:
            exception = Event(
                instance.id,
                master.ical_uid,
                master.organizer,
                created=now,
                summary=master.summary,
                description=master.description,
                location=master.location,
                start=dict(instance.start),
                end=dict(instance.end),
                recurring_event_id=master.id,
                original_start=dict(instance.original_start),
                attendees=[dict(a) for a in master.attendees],
                sequence=master.sequence,
            )
        if changes is None:
            exception.status = "cancelled"
        else:
            exception.status = "confirmed" if exception.cancelled else exception.status
            exception.apply({k: v for k, v in changes.items() if k != "recurrence"})
        return calendar.put(exception, now)

    def expire_sync_tokens(self, calendar: Calendar | None = None) -> None:
        for each in [calendar] if calendar else list(self.calendars.values()):
            each.sync_epoch += 1
        if calendar is None:
            self.list_epoch += 1


def resource_id(calendar: Calendar) -> str:
    """Opaque and stable per watched calendar, as X-Goog-Resource-ID is."""
    digest = hashlib.sha256(f"{calendar.owner}/{calendar.id}".encode()).hexdigest()
    return "".join(BASE32HEX[int(digest[i : i + 2], 16) % 32] for i in range(0, 54, 2))
