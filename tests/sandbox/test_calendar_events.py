"""The fake Google Calendar through google-api-python-client: calendarList, events.list with page and sync tokens,
cancelled events and series exceptions in incremental results, expansion, windows, 410. Every body is validated
against calendar.v3 from the discovery documents the library ships (tests/sandbox/schemas.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from googleapiclient.discovery import Resource
from googleapiclient.errors import HttpError

from sandbox.admin_client import SandboxAdmin
from tests.sandbox.conftest import ADA, CALENDAR_EVENTS, CALENDAR_LIST, CLIENT_ID, Sandbox

ZURICH, TOKYO = "Europe/Zurich", "Asia/Tokyo"


def list_events(events: Resource, calendar_id: str, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every item over all pages, and the pages."""
    pages: list[dict[str, Any]] = []
    request = events.list(calendarId=calendar_id, **params)
    while request is not None:
        pages.append(request.execute(num_retries=0))
        request = events.list_next(request, pages[-1])
    return [item for page in pages for item in page["items"]], pages


def refused(request: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as caught:
        request.execute(num_retries=0)
    return caught.value.resp.status, json.loads(caught.value.content)["error"]


def at(day: str, time: str, zone: str) -> dict[str, str]:
    return {"dateTime": f"{day}T{time}:00", "timeZone": zone}


@pytest.fixture
def work(admin: SandboxAdmin) -> str:
    """A fresh calendar of Ada's (in Zurich) with no events."""
    return admin.calendar.add_calendar(ADA, "Sync test", ZURICH)["id"]


def test_calendar_list_pages_then_syncs_changes(sandbox: Sandbox, admin: SandboxAdmin, ada_calendar: Resource) -> None:
    lists = ada_calendar.calendarList()
    first = lists.list(maxResults=2).execute(num_retries=0)
    second = lists.list_next(lists.list(maxResults=2), first).execute(num_retries=0)
    added = admin.calendar.add_calendar(ADA, "Clients", "America/New_York")
    changes = lists.list(syncToken=second["nextSyncToken"]).execute(num_retries=0)

    entries = first["items"] + second["items"]
    assert "nextSyncToken" not in first and "nextPageToken" in first and "nextPageToken" not in second
    assert [e["summary"] for e in entries] == [ADA, "Work", "Holidays in United Kingdom"]
    assert entries[0]["primary"] is True and entries[0]["id"] == ADA and entries[0]["accessRole"] == "owner"
    assert entries[2]["accessRole"] == "reader" and "primary" not in entries[2]
    assert [e["id"] for e in changes["items"]] == [added["id"]] and added["id"].endswith("@group.calendar.google.com")
    assert sandbox.validator.checked >= 3


def test_full_sync_then_incremental_sees_moves_cancellations_and_occurrences(
    admin: SandboxAdmin, ada_calendar: Resource, work: str
) -> None:
    cal = admin.calendar
    meeting = cal.add_event(
        ADA,
        work,
        {
            "summary": "Intro",
            "start": at("2026-03-04", "10:00", ZURICH),
            "end": at("2026-03-04", "10:30", ZURICH),
            "attendees": [{"email": ADA, "responseStatus": "accepted"}, "bob@example.com"],
        },
    )
    doomed = cal.add_event(
        ADA, work, {"summary": "Doomed", "start": {"date": "2026-03-05"}, "end": {"date": "2026-03-06"}}
    )
    series = cal.add_event(
        ADA,
        work,
        {
            "summary": "Weekly",
            "start": at("2026-03-02", "09:00", ZURICH),
            "end": at("2026-03-02", "09:30", ZURICH),
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=6"],
        },
    )
    full, pages = list_events(ada_calendar.events(), work, maxResults=2)

    cal.update_event(
        ADA, work, meeting["id"], {"start": at("2026-03-04", "15:00", ZURICH), "end": at("2026-03-04", "16:00", ZURICH)}
    )
    cal.cancel_event(ADA, work, doomed["id"])
    moved_occurrence = {
        "summary": "Weekly (moved)",
        "start": at("2026-03-10", "09:00", ZURICH),
        "end": at("2026-03-10", "09:30", ZURICH),
    }
    changed = cal.change_occurrence(ADA, work, series["id"], "2026-03-09", moved_occurrence)
    deleted = cal.delete_occurrence(ADA, work, series["id"], "2026-03-16T09:00:00+01:00")
    tokyo = cal.add_event(
        ADA, work, {"summary": "Tokyo offsite", "start": {"date": "2026-04-01"}, "end": {"date": "2026-04-03"}}
    )
    tokyo_call = cal.add_event(
        ADA,
        work,
        {"summary": "Tokyo call", "start": at("2026-04-01", "18:00", TOKYO), "end": at("2026-04-01", "19:00", TOKYO)},
    )
    incremental, incremental_pages = list_events(ada_calendar.events(), work, syncToken=pages[-1]["nextSyncToken"])
    quiet, quiet_pages = list_events(ada_calendar.events(), work, syncToken=incremental_pages[-1]["nextSyncToken"])

    assert [len(p["items"]) for p in pages] == [2, 1] and "nextSyncToken" in pages[-1]
    assert [e["id"] for e in full] == [meeting["id"], doomed["id"], series["id"]]
    assert full[0]["attendees"] == [
        {"email": ADA, "responseStatus": "accepted", "self": True, "organizer": True},
        {"email": "bob@example.com", "responseStatus": "needsAction"},
    ]
    assert full[1]["start"] == {"date": "2026-03-05"} and full[2]["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=6"]
    assert full[2]["start"] == {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": ZURICH}
    by_id = {e["id"]: e for e in incremental}
    assert list(by_id) == [meeting["id"], doomed["id"], changed["id"], deleted["id"], tokyo["id"], tokyo_call["id"]]
    assert by_id[meeting["id"]]["start"]["dateTime"] == "2026-03-04T15:00:00+01:00"
    assert by_id[meeting["id"]]["updated"] > full[0]["updated"] and by_id[meeting["id"]]["etag"] != full[0]["etag"]
    assert set(by_id[doomed["id"]]) == {"kind", "etag", "id", "status"} and by_id[doomed["id"]]["status"] == "cancelled"
    assert (
        by_id[changed["id"]]["recurringEventId"] == series["id"] and by_id[changed["id"]]["summary"] == "Weekly (moved)"
    )
    assert by_id[changed["id"]]["originalStartTime"] == {"dateTime": "2026-03-09T09:00:00+01:00", "timeZone": ZURICH}
    assert by_id[changed["id"]]["iCalUID"] == series["iCalUID"]
    assert by_id[deleted["id"]] == {
        "kind": "calendar#event",
        "etag": by_id[deleted["id"]]["etag"],
        "id": f"{series['id']}_20260316T080000Z",
        "status": "cancelled",
        "recurringEventId": series["id"],
        "originalStartTime": {"dateTime": "2026-03-16T09:00:00+01:00", "timeZone": ZURICH},
    }
    assert by_id[tokyo_call["id"]]["start"] == {"dateTime": "2026-04-01T18:00:00+09:00", "timeZone": TOKYO}
    assert quiet == [] and "nextSyncToken" in quiet_pages[-1]


def test_single_events_expands_series_and_false_keeps_masters_and_exceptions(
    admin: SandboxAdmin, ada_calendar: Resource, work: str
) -> None:
    series = admin.calendar.add_event(
        ADA,
        work,
        {"summary": "Weekly", "start": at("2026-03-02", "09:00", ZURICH), "end": at("2026-03-02", "09:30", ZURICH),
         "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5"]},
    )  # fmt: skip
    moved = admin.calendar.change_occurrence(ADA, work, series["id"], "2026-03-09", {"location": "Room 2"})
    gone = admin.calendar.delete_occurrence(ADA, work, series["id"], "2026-03-16")

    instances, _ = list_events(ada_calendar.events(), work, singleEvents=True, maxResults=2)
    masters, _ = list_events(ada_calendar.events(), work)
    windowed, _ = list_events(
        ada_calendar.events(), work, singleEvents=True, timeMin="2026-03-20T00:00:00Z", timeMax="2026-03-31T00:00:00Z"
    )

    assert sorted(i["start"]["dateTime"][:10] for i in instances) == [
        "2026-03-02",
        "2026-03-09",
        "2026-03-23",
        "2026-03-30",
    ]
    assert all(i["recurringEventId"] == series["id"] and "recurrence" not in i for i in instances)
    assert {i["id"] for i in instances} >= {moved["id"], f"{series['id']}_20260302T080000Z"}
    assert [m["id"] for m in masters] == [series["id"], moved["id"], gone["id"]]
    assert masters[2]["status"] == "cancelled"
    assert [w["start"]["dateTime"][:10] for w in windowed] == ["2026-03-23", "2026-03-30"]


def test_windows_and_parameters_refused_as_google_does(
    sandbox: Sandbox, admin: SandboxAdmin, ada_calendar: Resource, work: str
) -> None:
    events = ada_calendar.events()
    for day in ("2026-01-10", "2026-06-10"):
        admin.calendar.add_event(
            ADA, work, {"summary": day, "start": at(day, "10:00", ZURICH), "end": at(day, "11:00", ZURICH)}
        )
    _, pages = list_events(events, work)
    token = pages[-1]["nextSyncToken"]

    window, _ = list_events(events, work, timeMin="2026-05-01T00:00:00+02:00", timeMax="2026-07-01T00:00:00+02:00")
    with_sync = refused(events.list(calendarId=work, syncToken=token, timeMin="2026-05-01T00:00:00Z"))
    empty = refused(events.list(calendarId=work, timeMin="2026-05-01T00:00:00Z", timeMax="2026-05-01T00:00:00Z"))
    too_many = refused(events.list(calendarId=work, maxResults=2501))
    unknown = refused(events.list(calendarId="nobody@group.calendar.google.com"))

    assert [e["summary"] for e in window] == ["2026-06-10"]
    assert with_sync[0] == 400 and with_sync[1]["errors"][0]["location"] == "timeMin"
    assert empty[0] == 400 and empty[1]["errors"][0] == {
        "domain": "calendar", "reason": "timeRangeEmpty", "message": "The specified time range is empty.",
        "locationType": "parameter", "location": "timeMax",
    }  # fmt: skip
    assert too_many[0] == 400 and too_many[1]["errors"][0]["location"] == "maxResults"
    assert unknown[0] == 404 and unknown[1]["errors"][0]["reason"] == "notFound"
    assert list_events(events, work, maxResults=2500)[1][-1]["items"]


def test_expired_sync_tokens_answer_410_full_sync_required_for_that_calendar_only(
    admin: SandboxAdmin, ada_calendar: Resource, work: str
) -> None:
    events = ada_calendar.events()
    work_token = list_events(events, work)[1][-1]["nextSyncToken"]
    primary_token = list_events(events, "primary")[1][-1]["nextSyncToken"]

    admin.calendar.expire_sync_tokens(ADA, work)
    status, body = refused(events.list(calendarId=work, syncToken=work_token))
    still, _ = list_events(events, "primary", syncToken=primary_token)

    assert status == 410 and body == {
        "errors": [{"domain": "calendar", "reason": "fullSyncRequired",
                    "message": "Sync token is no longer valid, a full sync is required.",
                    "locationType": "parameter", "location": "syncToken"}],
        "code": 410, "message": "Sync token is no longer valid, a full sync is required.",
    }  # fmt: skip
    assert still == []
    assert list_events(events, work)[1][-1]["nextSyncToken"]  # the full sync works again


def test_seeded_events_page_at_2500_with_one_change_after(sandbox: Sandbox, admin: SandboxAdmin, work: str) -> None:
    seeded = admin.calendar.seed_events(ADA, work, 6_000)
    token = admin.mint_tokens(ADA, CLIENT_ID, [CALENDAR_LIST, CALENDAR_EVENTS])["access_token"]
    url = f"{sandbox.url}/calendar/v3/calendars/{work}/events"
    ids: list[str] = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        params: dict[str, Any] = {"maxResults": 2500}
        while True:
            page = http.get(url, params=params).json()
            ids += [e["id"] for e in page["items"]]
            if "nextPageToken" not in page:
                break
            params["pageToken"] = page["nextPageToken"]
        admin.calendar.update_event(ADA, work, ids[1234], {"summary": "Changed"})
        changes = http.get(url, params={"syncToken": page["nextSyncToken"], "maxResults": 2500}).json()

    assert seeded["seeded"] == 6_000 and seeded["seconds"] < 10, seeded
    assert len(ids) == len(set(ids)) == 6_000
    assert [(e["id"], e["summary"]) for e in changes["items"]] == [(ids[1234], "Changed")]


def test_demo_account_has_calendars_with_a_series_an_exception_and_a_deleted_occurrence(ada_calendar: Resource) -> None:
    entries = ada_calendar.calendarList().list().execute(num_retries=0)["items"]
    work = next(e["id"] for e in entries if e["summary"] == "Work")
    items, _ = list_events(ada_calendar.events(), work)
    primary, _ = list_events(ada_calendar.events(), "primary", showDeleted=True)

    series = [e for e in items if "recurrence" in e]
    exceptions = [e for e in items if "recurringEventId" in e]
    assert len(entries) == 3 and len(series) == 2
    assert sorted(e["status"] for e in exceptions) == ["cancelled", "confirmed"]
    assert {e["recurringEventId"] for e in exceptions} <= {s["id"] for s in series}
    assert any("date" in e.get("start", {}) for e in primary)
    assert any(e.get("start", {}).get("timeZone") == "America/New_York" for e in primary)
    assert [e["status"] for e in primary].count("cancelled") == 1  # shown with showDeleted only
    assert all(e["status"] != "cancelled" for e in list_events(ada_calendar.events(), "primary")[0])


def test_a_moved_event_leaves_a_cancelled_one_behind_and_a_removed_calendar_is_gone(
    admin: SandboxAdmin, ada_calendar: Resource, work: str
) -> None:
    other = admin.calendar.add_calendar(ADA, "Other", ZURICH)["id"]
    meeting = admin.calendar.add_event(
        ADA,
        work,
        {"summary": "Moving", "start": at("2026-05-01", "10:00", ZURICH), "end": at("2026-05-01", "11:00", ZURICH)},
    )
    work_token = list_events(ada_calendar.events(), work)[1][-1]["nextSyncToken"]
    list_token = ada_calendar.calendarList().list().execute(num_retries=0)["nextSyncToken"]

    admin.calendar.move_event(ADA, work, meeting["id"], other)
    left, _ = list_events(ada_calendar.events(), work, syncToken=work_token)
    arrived, _ = list_events(ada_calendar.events(), other)
    admin.calendar.remove_calendar(ADA, other)
    listed = ada_calendar.calendarList().list(syncToken=list_token).execute(num_retries=0)["items"]
    gone = refused(ada_calendar.events().list(calendarId=other))

    assert left == [{"kind": "calendar#event", "etag": left[0]["etag"], "id": meeting["id"], "status": "cancelled"}]
    assert [(e["id"], e["summary"], e["iCalUID"]) for e in arrived] == [(meeting["id"], "Moving", meeting["iCalUID"])]
    assert [(e["id"], e.get("deleted")) for e in listed] == [(other, True)]
    assert gone[0] == 404


def test_the_discovery_validator_refuses_what_calendar_v3_does_not_define(sandbox: Sandbox) -> None:
    """The check every test above relies on can fail: an unknown field, a wrong type, a bad date-time."""
    path = "/calendar/v3/calendars/primary/events"
    page = {
        "kind": "calendar#events",
        "items": [{"id": "abcde", "status": "confirmed", "start": {"date": "2026-01-01"}}],
    }
    sandbox.validator.check(path, 200, "application/json", json.dumps(page).encode())
    for broken in (
        {**page, "nextCursor": "x"},
        {**page, "items": [{"id": "abcde", "sequence": "1"}]},
        {**page, "items": [{"id": "abcde", "updated": "yesterday"}]},
        {**page, "items": [{"id": "abcde", "attendees": [{"email": "a@b.c", "rsvp": "yes"}]}]},
    ):
        with pytest.raises(AssertionError):
            sandbox.validator.check(path, 200, "application/json", json.dumps(broken).encode())


def test_sync_tokens_older_than_the_max_age_answer_410(admin: SandboxAdmin, ada_calendar: Resource, work: str) -> None:
    token = list_events(ada_calendar.events(), work)[1][-1]["nextSyncToken"]
    assert list_events(ada_calendar.events(), work, syncToken=token)[0] == []
    admin.calendar.settings(calendar_sync_token_max_age=0)

    assert refused(ada_calendar.events().list(calendarId=work, syncToken=token))[0] == 410
