"""A CalDAV calendar's events. By sync-collection (RFC 6578) where the server offers it: one REPORT for what
changed since the token, then the changed hrefs in calendar-multiget REPORTs of `page_size`. Otherwise by the
collection's ctag (one PROPFIND when nothing changed) and, when it moved, its members' etags (one PROPFIND depth 1)
diffed against those kept in the checkpoint.

Pages of a pass follow the hrefs in order, and a checkpoint inside a pass names the last href committed: a resumed
pass lists again and goes on after it, ending on the token (or ctag) its first listing got, so nothing that changed
meanwhile is missed. A sync token the server no longer knows raises CursorExpired: the engine runs a full pass and
deletes by href what it did not see.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urljoin

from caldav.collection import Calendar
from caldav.davclient import DAVClient

from connectors.base import Cursor, Page, Resource, StreamContext
from connectors.caldav import ical
from connectors.caldav.dav import CALDAV, CS, DAV, call, multiget, path_of, propfind, settings_of, signed_in
from core.errors import ConnectorError, CursorExpired
from crm.events import CalendarEvent

log = logging.getLogger(__name__)

ETAG = f"{{{DAV}}}getetag"
CTAG = f"{{{CS}}}getctag"
SYNC_TOKEN = f"{{{DAV}}}sync-token"
CALENDAR = f"{{{CALDAV}}}calendar"
CALENDAR_DATA = f"{{{CALDAV}}}calendar-data"
COLLECTION = f"{{{DAV}}}collection"
HOME_SET = f"{{{CALDAV}}}calendar-home-set"


def calendars(ctx: StreamContext) -> list[Resource]:
    """The account's calendars that hold events: the principal's calendar home, one PROPFIND depth 1 of it."""
    principal = ctx.base_url
    if not principal:
        raise ConnectorError("the CalDAV connection has no principal URL")
    with signed_in(ctx, principal) as client:
        found = call(ctx, "the principal", lambda: propfind(client, principal, [(CALDAV, "calendar-home-set")], 0))
        homes = [href.text.strip() for m in found if HOME_SET in m.props for href in m.props[HOME_SET] if href.text]
        if not homes:
            raise ConnectorError("the CalDAV server names no calendar home for this account")
        home = urljoin(principal, homes[0])
        wanted = [
            (DAV, "resourcetype"),
            (DAV, "displayname"),
            (CALDAV, "supported-calendar-component-set"),
            (DAV, "supported-report-set"),
        ]
        listing = call(ctx, "the calendar home", lambda: propfind(client, home, wanted, 1))
    resources = []
    for member in listing:
        kind = member.props.get(f"{{{DAV}}}resourcetype")
        if kind is None or kind.find(CALENDAR) is None:
            continue
        components = member.props.get(f"{{{CALDAV}}}supported-calendar-component-set")
        if components is not None and "VEVENT" not in {c.get("name", "").upper() for c in components}:
            continue
        reports = member.props.get(f"{{{DAV}}}supported-report-set")
        sync = reports is None or reports.find(f".//{{{DAV}}}sync-collection") is not None
        url = urljoin(home, member.raw)
        name = member.text(f"{{{DAV}}}displayname") or member.href.rstrip("/").rsplit("/", 1)[-1]
        resources.append(Resource(url, name, {"sync_collection": sync}))
    return resources


def pack(etags: dict[str, str]) -> str:
    """The members' etags as the checkpoint keeps them: compressed (5,000 events take ~100 KB)."""
    return base64.b64encode(zlib.compress(json.dumps(etags, separators=(",", ":")).encode(), 6)).decode()


def unpack(blob: str) -> dict[str, str]:
    found: dict[str, str] = json.loads(zlib.decompress(base64.b64decode(blob)))
    return found


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class CalDAVEventsStream:
    def __init__(self, context: StreamContext) -> None:
        assert context.resource is not None, "a calendar's stream reads one chosen calendar"
        self.ctx = context
        self.url = context.resource.external_id
        self.settings = settings_of(context)
        self.by_sync_token = self.settings.use_sync_collection and bool(
            context.resource.detail.get("sync_collection", True)
        )

    def read(self, cursor: Cursor | None) -> Iterator[Page]:
        with signed_in(self.ctx, self.url) as client:
            calendar = Calendar(client, url=self.url)
            if self.by_sync_token:
                yield from self._by_sync_token(client, calendar, dict(cursor or {}))
            else:
                yield from self._by_ctag(client, dict(cursor or {}))

    def _fetch(self, client: DAVClient, hrefs: list[str]) -> tuple[list[CalendarEvent], dict[str, str]]:
        """One calendar-multiget for `hrefs`: their records, and the etag of each href the server still has."""
        found = call(self.ctx, "the calendar's events", lambda: multiget(client, self.url, hrefs))
        records: list[CalendarEvent] = []
        etags: dict[str, str] = {}
        for member in found:
            data = member.props.get(CALENDAR_DATA)
            if data is None or not data.text:
                continue
            etags[member.href] = member.text(ETAG) or ""
            try:
                records.extend(ical.events(member.href, data.text))
            except ical.NotCalendarData:
                log.warning("a calendar object is not iCalendar data; skipped", extra={"href": member.href})
        return records, etags

    def _by_sync_token(self, client: DAVClient, calendar: Calendar, cursor: dict[str, Any]) -> Iterator[Page]:
        if cursor and "sync_token" not in cursor:
            raise CursorExpired("the calendar was synced by ctag; sync-collection starts with a full pass")
        since: str | None = cursor.get("sync_token")
        after: str | None = cursor.get("after")
        full = since is None
        report: Any = call(
            self.ctx,
            "the calendar's changes",
            lambda: calendar.get_objects_by_sync_token(since, load_objects=False, disable_fallback=True),
        )
        token = cursor.get("until") or report.sync_token
        if not token:
            raise ConnectorError("the CalDAV server answered sync-collection without a sync token")
        changed: set[str] = set()
        deleted: set[str] = set()
        for obj in report.objects:
            (deleted if obj.url.canonical() in report.deleted_urls else changed).add(path_of(str(obj.url)))
        pending = sorted(href for href in changed if after is None or href > after)
        gone = sorted(deleted - changed) if after is None else []
        done = {"sync_token": token}
        if not pending:
            yield Page([], gone, done, last=True, full=full)
            return
        batches = list(chunks(pending, self.settings.page_size))
        for number, batch in enumerate(batches, 1):
            records, etags = self._fetch(client, batch)
            vanished = [href for href in batch if href not in etags or not self._holds_events(href, records)]
            last = number == len(batches)
            checkpoint = done if last else {"sync_token": since, "until": token, "after": batch[-1]}
            total = len(changed) if full else None  # the progress of a full pass
            yield Page(records, (gone if number == 1 else []) + vanished, checkpoint, last=last, full=full, total=total)

    @staticmethod
    def _holds_events(href: str, records: list[CalendarEvent]) -> bool:
        return any(record.external_id == href or record.master_id == href for record in records)

    def _collection_tag(self, client: DAVClient) -> str:
        found = call(
            self.ctx,
            "the calendar's ctag",
            lambda: propfind(client, self.url, [(CS, "getctag"), (DAV, "sync-token")], 0),
        )
        for member in found:
            tag = member.text(CTAG) or member.text(SYNC_TOKEN)
            if tag:
                return tag
        raise ConnectorError("the CalDAV server gives this calendar neither a ctag nor a sync token")

    def _etags(self, client: DAVClient) -> dict[str, str]:
        own = path_of(self.url).rstrip("/")
        found = call(
            self.ctx,
            "the calendar's etags",
            lambda: propfind(client, self.url, [(DAV, "getetag"), (DAV, "resourcetype")], 1),
        )
        etags: dict[str, str] = {}
        for member in found:
            kind = member.props.get(f"{{{DAV}}}resourcetype")
            if member.href.rstrip("/") == own or (kind is not None and kind.find(COLLECTION) is not None):
                continue
            etags[member.href] = member.text(ETAG) or ""
        return etags

    def _by_ctag(self, client: DAVClient, cursor: dict[str, Any]) -> Iterator[Page]:
        if cursor and "ctag" not in cursor:
            raise CursorExpired("the calendar was synced by sync-collection; ctags start with a full pass")
        if not cursor or cursor.get("full"):
            yield from self._full_by_ctag(client, cursor)
            return
        known = unpack(cursor["etags"])
        ctag = self._collection_tag(client)
        if ctag == cursor["ctag"]:
            yield Page([], [], cursor, last=True, full=False)
            return
        listing = self._etags(client)
        gone = sorted(href for href in known if href not in listing)
        pending = sorted(href for href, etag in listing.items() if known.get(href) != etag or not etag)
        for href in gone:
            del known[href]
        if not pending:
            yield Page([], gone, {"ctag": ctag, "etags": pack(listing)}, last=True, full=False)
            return
        batches = list(chunks(pending, self.settings.page_size))
        for number, batch in enumerate(batches, 1):
            records, etags = self._fetch(client, batch)
            vanished = [href for href in batch if href not in etags or not self._holds_events(href, records)]
            for href in batch:
                known.pop(href, None)
            known.update(etags)
            last = number == len(batches)
            checkpoint = {"ctag": ctag if last else cursor["ctag"], "etags": pack(known)}
            yield Page(records, (gone if number == 1 else []) + vanished, checkpoint, last=last, full=False)

    def _full_by_ctag(self, client: DAVClient, cursor: dict[str, Any]) -> Iterator[Page]:
        """Every member, after the ctag is read: whatever changes once it was read makes the next ctag differ. A
        resumed pass cannot vouch for the etags of what an earlier slice fetched, so it keeps them blank (fetched
        again once the calendar next changes)."""
        after: str | None = cursor.get("after")
        ctag = cursor.get("ctag") or self._collection_tag(client)
        listing = self._etags(client)
        if after is not None:
            listing = {href: ("" if href <= after else etag) for href, etag in listing.items()}
        pending = sorted(href for href in listing if after is None or href > after)
        if not pending:
            yield Page([], [], {"ctag": ctag, "etags": pack(listing)}, last=True, full=True)
            return
        batches = list(chunks(pending, self.settings.page_size))
        for number, batch in enumerate(batches, 1):
            records, etags = self._fetch(client, batch)
            vanished = [href for href in batch if href not in etags]
            listing.update(etags)
            for href in vanished:
                listing.pop(href, None)
            last = number == len(batches)
            checkpoint = (
                {"ctag": ctag, "etags": pack(listing)} if last else {"ctag": ctag, "full": True, "after": batch[-1]}
            )
            yield Page(records, vanished, checkpoint, last=last, full=True, total=len(listing))
