"""The CalDAV servers the tests use are real and behave as the connector will meet them."""

from __future__ import annotations

import caldav
import pytest
from caldav.lib import error

from tests.caldav.servers import CalDAVServer

EVENT = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//synchub tests//EN
BEGIN:VEVENT
UID:servers-check-1@synchub.test
DTSTAMP:20261201T090000Z
DTSTART:20261203T090000Z
DTEND:20261203T100000Z
SUMMARY:Servers check
END:VEVENT
END:VCALENDAR
"""


def test_the_right_password_finds_the_principal_and_the_wrong_one_is_refused(caldav_server: CalDAVServer) -> None:
    with caldav_server.client() as client:
        principal = client.principal()
        assert principal.url.path.rstrip("/").endswith(("/" + caldav_server.username, "/user"))
    with caldav_server.client(password="not-the-password") as client, pytest.raises(error.AuthorizationError):
        client.principal()


def test_sync_collection_reports_a_change_and_a_deletion(caldav_server: CalDAVServer) -> None:
    with caldav_server.client() as client:
        calendar = client.principal().make_calendar(name="Servers check")
        first = calendar.get_objects_by_sync_token(load_objects=False, disable_fallback=True)
        event = calendar.save_event(EVENT)
        changed = calendar.get_objects_by_sync_token(first.sync_token, load_objects=False, disable_fallback=True)
        assert [obj.url.path for obj in changed] == [event.url.path]
        event.delete()
        deleted = calendar.get_objects_by_sync_token(changed.sync_token, load_objects=False, disable_fallback=True)
        assert [obj.url.path for obj in deleted] == [event.url.path]
        with pytest.raises(error.DAVError):
            calendar.get_objects_by_sync_token("http://bogus/sync/1", load_objects=False, disable_fallback=True)
        assert isinstance(calendar, caldav.Calendar)
