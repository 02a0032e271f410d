"""Calendars on the Google connection a user already has: unticked at consent, the capability asks for access and
Google Calendar is never called; granted later, the same connection syncs calendars and its contacts go on
untouched. The same meeting in two accounts is one meeting with two sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.calendar.conftest import CALENDAR_EVENTS, CALENDAR_LIST, CONTACTS_SCOPE, CalendarHub
from tests.calendar.test_calendar_sync import at


def test_calendar_unticked_then_granted_on_the_same_connection(cal: CalendarHub) -> None:
    account = cal.account(contacts=3)
    mark = cal.hub.log_mark()
    browser, connection_id = cal.connect(account, tick=[CONTACTS_SCOPE])
    contacts_run = cal.hub.wait_run(browser, connection_id)
    assert contacts_run["status"] == "succeeded"
    assert cal.hub.capability(browser, connection_id, "calendar")["state"] == "grant_access"
    assert browser.get(cal.url(connection_id)).status_code in (200, 409)
    assert cal.calendar_calls(account, mark) == [], "no Calendar call without its scopes"
    contacts = {c["external_id"]: c["updated_at"] for c in cal.hub.contacts(browser, connection_id)}
    assert len(contacts) == 3

    _again, same = cal.connect(account, browser, capabilities="calendar", tick=[CALENDAR_LIST, CALENDAR_EVENTS])
    assert same == connection_id, "granting access keeps the connection"
    assert cal.hub.capability(browser, connection_id, "calendar")["state"] == "ok"
    primary = next(r for r in cal.calendars(browser, connection_id).values() if r["selected"])
    assert cal.settled(connection_id, primary["id"], 1)[-1].status == "succeeded"
    assert cal.hub.sync_now(browser, connection_id)["status"] == "succeeded"
    assert {c["external_id"]: c["updated_at"] for c in cal.hub.contacts(browser, connection_id)} == contacts


def test_one_meeting_in_two_accounts(cal: CalendarHub) -> None:
    ada, bob = cal.account(), cal.account()
    today = datetime.now(UTC).date() + timedelta(days=2)
    meeting = cal.admin.calendar.add_event(
        ada, ada, {"summary": "Kickoff", "start": at(today, 10), "end": at(today, 11), "attendees": [ada, bob]}
    )
    cal.admin.calendar.add_event(
        bob,
        bob,
        {
            "summary": "Kickoff",
            "start": at(today, 10),
            "end": at(today, 11),
            "iCalUID": meeting["iCalUID"],
            "attendees": [ada, bob],
        },
    )
    browser, first = cal.connect(ada)
    _, second = cal.connect(bob, browser)
    for connection_id in (first, second):
        primary = next(r for r in cal.calendars(browser, connection_id).values() if r["selected"])
        cal.settled(connection_id, primary["id"], 1)
    found = [e for e in cal.events(browser) if e["ical_uid"] == meeting["iCalUID"]]
    assert len(found) == 1, "one meeting"
    assert sorted(s["connection_id"] for s in found[0]["sources"]) == sorted([str(first), str(second)])
