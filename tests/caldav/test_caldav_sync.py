"""CalDAV calendars through the hub, on Radicale and on Xandikos: changes made on the server reach
`/api/v1/events` after the next sync (one REPORT when nothing changed), series with an exception and an EXDATE,
all-day and zoned events read back as stored, an invalid sync token, a password changed on the server, and the same
meeting seen through Google and CalDAV."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import func, select

from core.db import transaction
from core.models import Connection
from crm.models import EventRow
from sync import checkpoints
from sync.checkpoints import Position, stream_key
from tests.caldav.calendars import new_calendar, timed, vevent
from tests.caldav.connect import connected_by_api
from tests.caldav.recorder import recording
from tests.caldav.servers import CalDAVServer
from tests.calendar.conftest import CalendarHub
from token_vault.vault import key_ring

WORKSPACE = "ws-caldav"


def on_server(server: CalDAVServer, url: str) -> Any:
    return server.client().calendar(url=url)


def connect(
    cal: CalendarHub, server: CalDAVServer, name: str, base: str | None = None
) -> tuple[httpx.Client, uuid.UUID, str]:
    """Connect the server's account, choose calendar `name`, and wait for its first run."""
    user = f"user-{uuid.uuid4().hex[:6]}"
    browser = cal.hub.browser(user=user, workspace=WORKSPACE)
    connection_id = connected_by_api(browser, cal.hub.url, server, base)
    listed = cal.calendars(browser, connection_id)
    assert not any(resource["selected"] for resource in listed.values()), "the user chooses the calendars"
    resource_id = listed[name]["id"]
    cal.choose(browser, connection_id, resource_id, True)
    first = cal.settled(connection_id, resource_id, 1)
    assert [(run.status, run.full_sync) for run in first] == [("succeeded", True)], first[-1].error
    return browser, connection_id, resource_id


def stored(cal: CalendarHub, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The connection's events in the API by external id, each once."""
    events = cal.events(browser, connection_id=str(connection_id))
    ids = [source["external_id"] for event in events for source in event["sources"]]
    assert len(ids) == len(set(ids)), f"duplicates: {[i for i, n in Counter(ids).items() if n > 1]}"
    return {source["external_id"]: event for event in events for source in event["sources"]}


def summaries(cal: CalendarHub, browser: httpx.Client, connection_id: uuid.UUID) -> list[str]:
    return sorted(event["summary"] for event in stored(cal, browser, connection_id).values())


def sync(cal: CalendarHub, browser: httpx.Client, connection_id: uuid.UUID, resource_id: str) -> dict[str, Any]:
    return cal.sync(browser, connection_id)[resource_id]


def test_changes_on_the_server_are_mirrored_with_one_report_when_nothing_changed(
    caldav_server: CalDAVServer, caldav_hub: CalendarHub
) -> None:
    cal = caldav_hub
    name = f"Team {uuid.uuid4().hex[:6]}"
    url = new_calendar(caldav_server, name, timed("intro-1", "Intro"), timed("lunch-1", "Lunch", hour=12))
    with recording(caldav_server.url) as recorder:
        browser, connection_id, resource_id = connect(cal, caldav_server, name, base=recorder.url)
        assert summaries(cal, browser, connection_id) == ["Intro", "Lunch"]

        calendar = on_server(caldav_server, url)
        calendar.save_event(timed("intro-1", "Intro (moved)", hour=15))
        calendar.event_by_uid("lunch-1").delete()
        calendar.save_event(timed("review-1", "Review", day="20270105"))
        mark = recorder.mark()
        run = sync(cal, browser, connection_id, resource_id)
        assert run["status"] == "succeeded" and not run["full_sync"]
        assert recorder.since(mark) == ["REPORT", "REPORT"], "one sync-collection and one calendar-multiget"
        assert summaries(cal, browser, connection_id) == ["Intro (moved)", "Review"]
        moved = next(e for e in stored(cal, browser, connection_id).values() if e["summary"] == "Intro (moved)")
        assert moved["start"] == "2027-01-04T15:00:00+01:00" and moved["ical_uid"] == "intro-1"

        mark = recorder.mark()
        quiet = sync(cal, browser, connection_id, resource_id)
        assert recorder.since(mark) == ["REPORT"]
        assert quiet["status"] == "succeeded" and quiet["api_calls"] == 1
        assert summaries(cal, browser, connection_id) == ["Intro (moved)", "Review"]


SERIES = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//synchub tests//EN\r\n"
    "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20261201T090000Z\r\n"
    "DTSTART;TZID=Europe/Berlin:20270104T100000\r\nDTEND;TZID=Europe/Berlin:20270104T110000\r\n"
    "RRULE:FREQ=WEEKLY;COUNT=5\r\nEXDATE;TZID=Europe/Berlin:20270118T100000\r\nSUMMARY:Weekly\r\n"
    "ORGANIZER;CN=Ann:mailto:ann@example.com\r\n"
    "ATTENDEE;CN=Ann;PARTSTAT=ACCEPTED:mailto:ann@example.com\r\n"
    "ATTENDEE;CN=Bob;PARTSTAT=TENTATIVE;ROLE=OPT-PARTICIPANT:mailto:Bob@Example.com\r\n"
    "END:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20261201T090000Z\r\n"
    "RECURRENCE-ID;TZID=Europe/Berlin:20270111T100000\r\n"
    "DTSTART;TZID=Europe/Berlin:20270112T140000\r\nDTEND;TZID=Europe/Berlin:20270112T150000\r\n"
    "SUMMARY:Weekly (moved)\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)
HOLIDAY = vevent("holiday-1", "Holiday", ";VALUE=DATE:20270106", ";VALUE=DATE:20270108")
TOKYO = timed("tokyo-1", "Tokyo call", day="20270107", hour=9, zone="Asia/Tokyo").replace(
    "BEGIN:VEVENT",
    "BEGIN:VTIMEZONE\r\nTZID:Asia/Tokyo\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0900\r\n"
    "TZOFFSETTO:+0900\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT",
)
OUTLOOK = timed("outlook-1", "Outlook call", day="20270107", hour=14, zone="W. Europe Standard Time").replace(
    "BEGIN:VEVENT",
    "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\nDTSTART:16010101T030000\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
    "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT",
)
"""A zone only its VTIMEZONE defines (Outlook's names): the offset comes from it, the time is shown in UTC."""


def test_a_series_with_an_exception_and_an_exdate_all_day_and_zoned_events_read_back(
    caldav_server: CalDAVServer, caldav_hub: CalendarHub
) -> None:
    cal = caldav_hub
    name = f"Series {uuid.uuid4().hex[:6]}"
    new_calendar(caldav_server, name, SERIES, HOLIDAY, TOKYO, OUTLOOK)
    browser, connection_id, _ = connect(cal, caldav_server, name)
    by_id = stored(cal, browser, connection_id)
    master = next(e for e in by_id.values() if e["ical_uid"] == "weekly-1" and not e["recurrence_id"])
    assert master["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=5", "EXDATE:20270118T090000Z"]
    assert master["organizer_email"] == "ann@example.com"
    assert [(a["email"], a["response_status"], a["organizer"], a["optional"]) for a in master["attendees"]] == [
        ("ann@example.com", "accepted", True, False),
        ("bob@example.com", "tentative", False, True),
    ]
    exception = next(e for e in by_id.values() if e["recurrence_id"] == "20270111T090000Z")
    assert exception["master_id"] == master["external_id"] and exception["summary"] == "Weekly (moved)"

    answer = browser.get(
        f"{cal.hub.url}/api/v1/events",
        params={"start": "2027-01-01T00:00:00Z", "end": "2027-02-15T00:00:00Z", "limit": 100},
    )
    assert answer.status_code == 200, answer.text
    occurrences = [(e["summary"], e["start"], e["end"], e["all_day"]) for e in answer.json()["events"]]
    assert occurrences == [
        ("Weekly", "2027-01-04T10:00:00+01:00", "2027-01-04T11:00:00+01:00", False),
        ("Holiday", "2027-01-06", "2027-01-08", True),
        ("Tokyo call", "2027-01-07T09:00:00+09:00", "2027-01-07T10:00:00+09:00", False),
        ("Outlook call", "2027-01-07T13:00:00+00:00", "2027-01-07T14:00:00+00:00", False),
        ("Weekly (moved)", "2027-01-12T14:00:00+01:00", "2027-01-12T15:00:00+01:00", False),
        ("Weekly", "2027-01-25T10:00:00+01:00", "2027-01-25T11:00:00+01:00", False),
        ("Weekly", "2027-02-01T10:00:00+01:00", "2027-02-01T11:00:00+01:00", False),
    ]
    tokyo = next(e for e in by_id.values() if e["ical_uid"] == "tokyo-1")
    assert tokyo["time_zone"] == "Asia/Tokyo"


def corrupt_sync_token(cal: CalendarHub, connection_id: uuid.UUID, resource_id: str) -> None:
    ring = key_ring(cal.hub.settings.vault)
    stream = stream_key("calendar", resource_id)
    with transaction(cal.hub.sessions) as session:
        connection = session.get_one(Connection, connection_id)
        position = checkpoints.load(session, ring, connection, stream)
        assert position.cursor.get("sync_token")
        cursor = {**position.cursor, "sync_token": position.cursor["sync_token"] + "-no-longer-known"}
        checkpoints.save(session, ring, connection, stream, Position(cursor))


def rows_of(cal: CalendarHub, connection_id: uuid.UUID) -> int:
    with cal.hub.sessions() as session:
        return int(session.scalar(select(func.count()).where(EventRow.connection_id == connection_id)) or 0)


def test_an_invalid_sync_token_runs_a_full_pass_without_duplicates(
    caldav_server: CalDAVServer, caldav_hub: CalendarHub
) -> None:
    cal = caldav_hub
    name = f"Expiring {uuid.uuid4().hex[:6]}"
    url = new_calendar(caldav_server, name, *(timed(f"keep-{i}", f"Keep {i}", hour=8 + i) for i in range(3)))
    browser, connection_id, resource_id = connect(cal, caldav_server, name)
    calendar = on_server(caldav_server, url)
    calendar.event_by_uid("keep-0").delete()
    calendar.save_event(timed("late-1", "Late", hour=18))
    corrupt_sync_token(cal, connection_id, resource_id)

    run = sync(cal, browser, connection_id, resource_id)
    assert run["status"] == "succeeded" and run["full_sync"], run
    assert summaries(cal, browser, connection_id) == ["Keep 1", "Keep 2", "Late"]
    assert rows_of(cal, connection_id) == 3
    again = sync(cal, browser, connection_id, resource_id)
    assert again["status"] == "succeeded" and not again["full_sync"] and again["api_calls"] == 1


def test_a_password_changed_on_the_server_needs_reauth_and_the_new_one_resumes_incrementally(
    caldav_server: CalDAVServer, caldav_hub: CalendarHub
) -> None:
    cal = caldav_hub
    name = f"Reauth {uuid.uuid4().hex[:6]}"
    url = new_calendar(caldav_server, name, timed("one-1", "One"))
    old = caldav_server.password
    with recording(caldav_server.url) as recorder:
        browser, connection_id, resource_id = connect(cal, caldav_server, name, base=recorder.url)
        caldav_server.set_password("app-password-" + uuid.uuid4().hex[:8])
        try:
            mark = recorder.mark()
            run = sync(cal, browser, connection_id, resource_id)
            assert run["status"] == "failed" and "new app password" in run["error"], run
            assert recorder.since(mark) == ["REPORT"], "refused once, nothing more asked"
            view = cal.hub.connection(browser, connection_id)
            assert view["status"] == "needs_reauth"
            answer = browser.post(f"{cal.hub.url}/api/v1/connections/{connection_id}/sync")
            assert answer.status_code == 200 and not any(answer.json()["runs"].values())
            assert recorder.since(mark) == ["REPORT"]
            assert summaries(cal, browser, connection_id) == ["One"], "what was synced stays"

            # The user types the new app password: the same connection, active again, and its next sync goes on
            # from its sync token (a sync-collection REPORT and a multiget), not a full pass.
            on_server(caldav_server, url).save_event(timed("two-1", "Two", hour=14))
            before = len(cal.settled(connection_id, resource_id, 1))
            mark = recorder.mark()
            assert connected_by_api(browser, cal.hub.url, caldav_server, recorder.url) == connection_id
            assert cal.hub.connection(browser, connection_id)["status"] == "active"
            resumed = sync(cal, browser, connection_id, resource_id)
            assert resumed["status"] == "succeeded", resumed
            after = cal.settled(connection_id, resource_id, before + 1)[before:]
            assert after and all(run.status == "succeeded" and not run.full_sync for run in after), after
            sent = recorder.since(mark)  # the connect's discovery (PROPFINDs), then each run's sync-collection
            # REPORT and one multiget for the one change (the reconnect may start a run before "sync now" does)
            assert set(sent) <= {"PROPFIND", "REPORT"} and sent.count("REPORT") == len(after) + 1, sent
            assert summaries(cal, browser, connection_id) == ["One", "Two"]
        finally:
            caldav_server.set_password(old)


def test_the_same_meeting_at_google_and_at_a_caldav_server_is_one_meeting_with_two_sources(
    caldav_server: CalDAVServer, caldav_hub: CalendarHub
) -> None:
    cal = caldav_hub
    uid = f"board-{uuid.uuid4().hex[:8]}@example.com"
    name = f"Shared {uuid.uuid4().hex[:6]}"
    new_calendar(caldav_server, name, timed(uid, "Board meeting", day="20270108", hour=9, zone="UTC"))
    browser, connection_id, _ = connect(cal, caldav_server, name)
    account = cal.account()
    cal.admin.calendar.add_event(
        account,
        account,
        {
            "summary": "Board meeting",
            "iCalUID": uid,
            "start": {"dateTime": "2027-01-08T09:00:00Z", "timeZone": "UTC"},
            "end": {"dateTime": "2027-01-08T10:00:00Z", "timeZone": "UTC"},
        },
    )
    _, google_id = cal.connect(account, browser=browser)
    primary = next(r for r in cal.calendars(browser, google_id).values() if r["selected"])
    cal.settled(google_id, primary["id"], 1)
    meetings = [e for e in cal.events(browser) if e["ical_uid"] == uid]
    assert len(meetings) == 1
    sources = meetings[0]["sources"]
    assert sorted(s["provider"] for s in sources) == ["caldav", "google"]
    assert {s["connection_id"] for s in sources} == {str(connection_id), str(google_id)}


# The ctag path and the connector contract are collected here too, so that they run on this module's two servers
# (each module starts its own, and a Xandikos takes seconds to start).
from tests.caldav.contract_caldav import TestCalDAVContract  # noqa: E402
from tests.caldav.ctag import (  # noqa: E402
    test_the_app_bucket_is_the_servers_host,
    test_without_sync_collection_the_ctag_and_etags_find_a_change_and_a_deletion,
)

__all__ = [
    "TestCalDAVContract",
    "test_the_app_bucket_is_the_servers_host",
    "test_without_sync_collection_the_ctag_and_etags_find_a_change_and_a_deletion",
]
