"""Calendars and iCalendar objects the CalDAV tests make on a server through the caldav library."""

from __future__ import annotations

from tests.caldav.servers import CalDAVServer


def vevent(uid: str, summary: str, start: str, end: str, extra: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//synchub tests//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20261201T090000Z\r\nDTSTART{start}\r\nDTEND{end}\r\nSUMMARY:{summary}\r\n{extra}"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def timed(uid: str, summary: str, day: str = "20270104", hour: int = 10, zone: str = "Europe/Berlin") -> str:
    return vevent(uid, summary, f";TZID={zone}:{day}T{hour:02d}0000", f";TZID={zone}:{day}T{hour + 1:02d}0000")


def new_calendar(server: CalDAVServer, name: str, *objects: str) -> str:
    """A calendar made on the server holding `objects`; its URL on the server."""
    with server.client() as client:
        calendar = client.principal().make_calendar(name=name)
        for data in objects:
            calendar.save_event(data)
        return str(calendar.url)
