"""One CalDAV object (a VCALENDAR with one UID) as the CRM's event records: its master or single VEVENT under the
object's href, and each exception (RECURRENCE-ID) under `href#<recurrence id>` with the href as its master.

Times keep their zone (TZID, a VTIMEZONE's name when it is an IANA one), all-day events keep their dates, and a
series keeps its RRULE, EXDATE and RDATE lines with dates in UTC (or plain dates for all-day series), which is
how the CRM expands occurrences at read time (RFC 5545 3.8.5; shared/providers.md 5.7).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

from crm.events import Attendee, CalendarEvent

PARTSTAT = {
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
    "NEEDS-ACTION": "needsAction",
    "DELEGATED": "delegated",
}
"""PARTSTAT in the words Google's copies of the same meeting use, so grouped sources read alike."""
STATUS = {"CONFIRMED": "confirmed", "TENTATIVE": "tentative", "CANCELLED": "cancelled"}
RULE_LINES = ("RRULE", "EXRULE")
DATE_LINES = ("EXDATE", "RDATE")


class NotCalendarData(ValueError):
    """The server's calendar-data is not an iCalendar object."""


def zone_name(value: tzinfo | None, tzid: str | None) -> str | None:
    """An IANA name for an event's zone: the zoneinfo's own, else one a custom VTIMEZONE's TZID ends with
    (Outlook and Lightning prefix theirs, `/mozilla.org/20050126_1/Europe/Berlin`)."""
    key = getattr(value, "key", None)
    if isinstance(key, str):
        return key
    if not tzid:
        return "UTC" if value is not None and value.utcoffset(None) == timedelta(0) else None
    parts = tzid.strip("/").split("/")
    for length in (3, 2, 1):
        candidate = "/".join(parts[-length:])
        try:
            ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return candidate
    return None


def utc_stamp(value: date | datetime) -> str:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def _dates(prop: Any) -> list[date | datetime]:
    found: list[date | datetime] = []
    for item in prop if isinstance(prop, list) else [prop]:
        for entry in getattr(item, "dts", ()):
            if isinstance(entry.dt, date):  # periods in RDATE are not kept
                found.append(entry.dt)
    return found


def recurrence_lines(component: icalendar.Event, all_day: bool) -> tuple[str, ...]:
    lines: list[str] = []
    for name in RULE_LINES:
        for rule in _list(component.get(name)):
            lines.append(f"{name}:{rule.to_ical().decode()}")
    for name in DATE_LINES:
        values = _dates(component.get(name)) if component.get(name) is not None else []
        if not values:
            continue
        if all_day:
            days = [value.date() if isinstance(value, datetime) else value for value in values]
            lines.append(f"{name};VALUE=DATE:" + ",".join(day.strftime("%Y%m%d") for day in days))
        else:
            lines.append(f"{name}:" + ",".join(utc_stamp(value) for value in values))
    return tuple(lines)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(component: icalendar.Event, name: str) -> str | None:
    value = component.get(name)
    if value is None:
        return None
    shown = str(value).strip()
    return shown or None


def _mailto(value: Any) -> str | None:
    if value is None:
        return None
    address = str(value).strip()
    if address.lower().startswith("mailto:"):
        address = address[7:]
    return address.strip().lower() or None


def attendees(component: icalendar.Event, organizer: str | None) -> tuple[Attendee, ...]:
    found: dict[str, Attendee] = {}
    for entry in _list(component.get("ATTENDEE")):
        email = _mailto(entry)
        if not email or "@" not in email:
            continue
        params = getattr(entry, "params", {})
        partstat = str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()
        found.setdefault(
            email,
            Attendee(
                email=email,
                display_name=params.get("CN") or None,
                response_status=PARTSTAT.get(partstat, partstat.lower()),
                organizer=email == organizer,
                optional=str(params.get("ROLE", "")).upper() == "OPT-PARTICIPANT",
            ),
        )
    return tuple(found.values())


def _when(component: icalendar.Event, name: str) -> tuple[date | datetime | None, str | None]:
    prop = component.get(name)
    if prop is None:
        return None, None
    value = prop.dt
    tzid = prop.params.get("TZID") if hasattr(prop, "params") else None
    return value, tzid


def _end(component: icalendar.Event, start: date | datetime) -> date | datetime:
    end, _ = _when(component, "DTEND")
    if end is not None:
        return end
    duration = component.get("DURATION")
    if duration is not None:
        later: date | datetime = start + duration.dt
        return later
    return start + timedelta(days=1) if not isinstance(start, datetime) else start


def _iso(value: date | datetime, all_day: bool) -> str:
    if all_day:
        return (value.date() if isinstance(value, datetime) else value).isoformat()
    assert isinstance(value, datetime)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def event(component: icalendar.Event, href: str, uid: str | None) -> CalendarEvent | None:
    start, tzid = _when(component, "DTSTART")
    if start is None:
        return None
    all_day = not isinstance(start, datetime)
    end = _end(component, start)
    recurrence, _ = _when(component, "RECURRENCE-ID")
    rid = None
    if recurrence is not None:
        dated = all_day and isinstance(recurrence, datetime)
        rid = recurrence.strftime("%Y%m%d") if dated else utc_stamp(recurrence)
    organizer = _mailto(component.get("ORGANIZER"))
    sequence = component.get("SEQUENCE")
    status = str(component.get("STATUS", "CONFIRMED")).upper()
    return CalendarEvent(
        external_id=f"{href}#{rid}" if rid else href,
        ical_uid=uid,
        recurrence_id=rid,
        master_id=href if rid else None,
        status=STATUS.get(status, "confirmed"),
        summary=_text(component, "SUMMARY"),
        description=_text(component, "DESCRIPTION"),
        location=_text(component, "LOCATION"),
        all_day=all_day,
        start=_iso(start, all_day),
        end=_iso(end, all_day),
        time_zone=None if all_day else zone_name(start.tzinfo if isinstance(start, datetime) else None, tzid),
        recurrence=() if rid else recurrence_lines(component, all_day),
        organizer_email=organizer,
        sequence=int(sequence) if sequence is not None else None,
        attendees=attendees(component, organizer),
        whole_series=rid is None,
    )


VTIMEZONE = re.compile(r"BEGIN:VTIMEZONE\r?\n(?:.*\r?\n)*?END:VTIMEZONE\r?\n", re.MULTILINE)
TZID = re.compile(r"^TZID:(.*?)\r?$", re.MULTILINE)


def _known_zone(block: re.Match[str]) -> str:
    """A VTIMEZONE whose TZID is an IANA name is dropped before parsing: icalendar then takes the zone from the
    zoneinfo database, which the server's definition was made from, and parsing the object costs ~40% less."""
    found = TZID.search(block.group(0))
    if found is None:
        return block.group(0)
    try:
        ZoneInfo(found.group(1).strip())
    except (ZoneInfoNotFoundError, ValueError):
        return block.group(0)
    return ""


def events(href: str, data: str | bytes) -> list[CalendarEvent]:
    """The records of one calendar object resource: master (or single event) first, then its exceptions. An
    object without a VEVENT (a task, a journal entry) has none."""
    text = data.decode() if isinstance(data, bytes) else data
    if "BEGIN:VTIMEZONE" in text:
        text = VTIMEZONE.sub(_known_zone, text)
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise NotCalendarData(str(exc)) from exc
    found: list[CalendarEvent] = []
    for component in _components(calendar):
        uid = _text(component, "UID")
        record = event(component, href, uid)
        if record is not None:
            found.append(record)
    found.sort(key=lambda record: record.recurrence_id or "")
    return list({record.external_id: record for record in found}.values())


def _components(calendar: Any) -> Iterable[icalendar.Event]:
    return [c for c in calendar.subcomponents if getattr(c, "name", None) == "VEVENT"]
