"""The CalDAV stream without sync-collection (the deployment turned it off, or the server lacks it): the calendar's
ctag, then its members' etags diffed against the checkpoint's; and the rate bucket per server host."""

from __future__ import annotations

import uuid
from dataclasses import replace

from connectors.base import Page, StreamContext
from connectors.caldav.settings import CalDAVSettings
from connectors.caldav.spec import SPEC
from connectors.caldav.stream import CalDAVEventsStream, calendars
from core.errors import SecretMissing
from sync import guard
from tests.caldav.calendars import new_calendar, timed
from tests.caldav.connect import principal_url
from tests.caldav.recorder import recording
from tests.caldav.servers import CalDAVServer
from tests.conftest import settings_from_env
from tests.contract import base_env


class Secrets:
    """The two named secrets the vault holds for a CalDAV connection (the contract suite's stand-in for it)."""

    def __init__(self, server: CalDAVServer) -> None:
        self.values = {"username": server.username, "password": server.password}

    def access_token(self) -> str:
        raise SecretMissing("access token")

    def rejected(self, token: str) -> str:
        raise SecretMissing("access token")

    def secret(self, name: str) -> str:
        if name not in self.values:
            raise SecretMissing(name)
        return self.values[name]

    def keep(self, name: str, value: str) -> None:
        self.values[name] = value


def read(stream: CalDAVEventsStream, cursor: dict[str, object] | None) -> list[Page]:
    return list(stream.read(cursor))


def test_without_sync_collection_the_ctag_and_etags_find_a_change_and_a_deletion(caldav_server: CalDAVServer) -> None:
    name = f"Ctag {uuid.uuid4().hex[:6]}"
    url = new_calendar(caldav_server, name, *(timed(f"c-{i}", f"Event {i}", hour=8 + i) for i in range(5)))
    settings = CalDAVSettings(allow_private_hosts=True, use_sync_collection=False, page_size=2)
    with recording(caldav_server.url) as recorder:
        ctx = StreamContext("c", Secrets(caldav_server), principal_url(caldav_server, recorder.url), settings)
        chosen = next(r for r in calendars(ctx) if r.display_name == name)
        stream = CalDAVEventsStream(replace(ctx, resource=chosen))

        mark = recorder.mark()
        full = read(stream, None)
        assert recorder.since(mark) == ["PROPFIND", "PROPFIND", "REPORT", "REPORT", "REPORT"]
        assert [(len(p.records), p.full, p.last) for p in full] == [(2, True, False), (2, True, False), (1, True, True)]
        assert "sync_token" not in full[-1].checkpoint

        mark = recorder.mark()
        quiet = read(stream, full[-1].checkpoint)
        assert recorder.since(mark) == ["PROPFIND"], "one PROPFIND of the ctag when nothing changed"
        assert [(p.records, p.deleted_ids, p.last) for p in quiet] == [([], [], True)]

        with caldav_server.client() as client:
            calendar = client.calendar(url=url)
            calendar.save_event(timed("c-1", "Event 1 (changed)", hour=9))
            calendar.event_by_uid("c-3").delete()
        mark = recorder.mark()
        changed = read(stream, quiet[-1].checkpoint)
        assert recorder.since(mark) == ["PROPFIND", "PROPFIND", "REPORT"], "ctag, etags, one multiget"
        assert [r.summary for p in changed for r in p.records] == ["Event 1 (changed)"]
        deleted = [i for p in changed for i in p.deleted_ids]
        assert len(deleted) == 1 and deleted[0].endswith(".ics") and not changed[-1].full

        mark = recorder.mark()
        assert read(stream, changed[-1].checkpoint)[-1].records == []
        assert recorder.since(mark) == ["PROPFIND"]


def test_the_app_bucket_is_the_servers_host() -> None:
    env = {k: v for k, v in base_env("caldav", "caldav").items() if "CLIENT_" not in k}
    settings = settings_from_env(env)
    one = StreamContext("c1", Secrets.__new__(Secrets), "http://127.0.0.1:5232/alice/")
    other = StreamContext("c1", Secrets.__new__(Secrets), "http://localhost:5232/alice/")
    same_host = StreamContext("c2", Secrets.__new__(Secrets), "http://127.0.0.1:5233/bob/")
    keys = [guard.buckets(settings, SPEC, ctx).app.key for ctx in (one, other, same_host)]
    assert keys == ["caldav:app:127.0.0.1", "caldav:app:localhost", "caldav:app:127.0.0.1"]
