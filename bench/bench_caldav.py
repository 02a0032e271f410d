"""CalDAV: one Radicale calendar of 5k events synced by the sync engine (in this process, real PostgreSQL and
Redis), every request to Radicale seen by a recording front.

Prints, with medians and spread over the repeats:
- the full sync (a new connection each repeat): requests by method, time, events/s, next to a floor: the caldav
  library alone fetching the same hrefs with one calendar-multiget and parsing each event once with icalendar,
  with no database;
- one event changed: the incremental sync's requests and time; then nothing changed: its requests.

Exits 1 when a count is off: events lost or doubled, or an incremental sync that sent more than 1 REPORT plus
1 multiget for the change (1 REPORT when nothing changed). The calendar is seeded as files in Radicale's storage
folder.

Needs PostgreSQL (SYNCHUB_TEST_PG_ADMIN_URL) and Redis (SYNCHUB_TEST_REDIS_URL, default redis://127.0.0.1:6379;
database SYNCHUB_TEST_REDIS_DB, default 14, is used and flushed).

    python bench/bench_caldav.py           # 5,000 events, 3 repeats
    python bench/bench_caldav.py --small   # 300 events
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import caldav
import httpx
import icalendar
import redis
from sqlalchemy import func, select, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_contacts import REDIS_DB, database, hub_env  # noqa: E402

from connectors.caldav.settings import CalDAVSettings  # noqa: E402
from connectors.caldav.spec import SPEC  # noqa: E402
from core.db import transaction  # noqa: E402
from core.models import Connection  # noqa: E402
from core.settings import load_settings  # noqa: E402
from crm.models import EventRow  # noqa: E402
from sync import resources  # noqa: E402
from sync.models import ConnectionResource, SyncRun  # noqa: E402
from sync.runtime import Runtime  # noqa: E402
from sync.wiring import build_engine  # noqa: E402
from tests.caldav.connect import connected  # noqa: E402
from tests.caldav.recorder import Recorder, recording  # noqa: E402
from tests.caldav.servers import CalDAVServer, running  # noqa: E402

CAPABILITY = "calendar"
PAGE_SIZE = CalDAVSettings().page_size
SHM = "/dev/shm"  # noqa: S108
"""Radicale's storage in memory: it writes (and fsyncs) a cache and a history file per item the first time a
sync-collection meets files it did not write itself, ~200 ms an item on a busy disk, which is the disk's figure,
not the connector's."""


BERLIN = [
    "BEGIN:VTIMEZONE",
    "TZID:Europe/Berlin",
    "BEGIN:DAYLIGHT",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "TZNAME:CEST",
    "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "END:DAYLIGHT",
    "BEGIN:STANDARD",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "TZNAME:CET",
    "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "END:STANDARD",
    "END:VTIMEZONE",
]
"""Each object carries the VTIMEZONE of its TZID, as clients write them (without it Radicale looks the zone up
for every item it reads, ~45 ms each)."""


def calendar_body(events: int) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//synchub bench//EN", *BERLIN]
    for number in range(events):
        day = 1 + number % 28
        lines += [
            "BEGIN:VEVENT",
            f"UID:bench-{number:05d}@synchub.test",
            "DTSTAMP:20261201T090000Z",
            f"DTSTART;TZID=Europe/Berlin:202701{day:02d}T{8 + number % 9:02d}0000",
            f"DTEND;TZID=Europe/Berlin:202701{day:02d}T{9 + number % 9:02d}0000",
            f"SUMMARY:Bench event {number}",
            "ORGANIZER;CN=Ann:mailto:ann@example.com",
            "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.com",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def seed(server: CalDAVServer, events: int) -> str:
    """The calendar written as files in Radicale's storage folder, one item per event (a PUT of the whole calendar
    costs Radicale ~170 ms per event; one PUT per event ~23 ms)."""
    with server.client() as client:
        path = client.principal().url.path
    name = f"bench-{uuid.uuid4().hex[:6]}"
    folder = server.folder / "collections" / "collection-root" / path.strip("/") / name
    folder.mkdir(parents=True)
    (folder / ".Radicale.props").write_text(json.dumps({"tag": "VCALENDAR", "D:displayname": name}))
    head, *items = calendar_body(events).split("BEGIN:VEVENT")
    head = head.rstrip("\r\n") + "\r\n"
    for number, item in enumerate(items):
        body = item.replace("END:VCALENDAR\r\n", "")
        (folder / f"bench-{number:05d}.ics").write_text(head + "BEGIN:VEVENT" + body + "END:VCALENDAR\r\n")
    return f"{server.url.rstrip('/')}{path}{name}/"


def warm(server: CalDAVServer, url: str) -> None:
    """Radicale reads each new file once (parses it, writes its cache and sync history) on the first listing;
    that is the server's cost of files written behind its back, done before anything is measured."""
    with caldav.DAVClient(url=url, username=server.username, password=server.password, timeout=3600) as client:
        client.calendar(url=url).get_objects_by_sync_token(load_objects=False, disable_fallback=True)


def floor(server: CalDAVServer, url: str, page: int | None = None) -> tuple[float, int]:
    """The same hrefs fetched with one calendar-multiget (or one per `page` hrefs, as the connector does), each
    event parsed once, nothing written."""
    with server.client() as client:
        calendar = client.calendar(url=url)
        hrefs = [obj.url for obj in calendar.get_objects_by_sync_token(load_objects=False, disable_fallback=True)]
        started = time.perf_counter()
        parsed = 0
        size = page or len(hrefs)
        for start in range(0, len(hrefs), size):
            for obj in calendar.multiget(hrefs[start : start + size]):
                icalendar.Calendar.from_ical(obj.data)
                parsed += 1
        return time.perf_counter() - started, parsed


class Bench:
    def __init__(self, rt: Runtime, server: CalDAVServer, recorder: Recorder, calendar_url: str) -> None:
        self.rt, self.server, self.recorder, self.calendar_url = rt, server, recorder, calendar_url
        self.engine = build_engine(rt)

    def connect(self) -> tuple[uuid.UUID, str]:
        """A new connection with the calendar chosen (the listing as the chooser records it)."""
        user = f"bench-{uuid.uuid4().hex[:6]}"
        connection_id = connected(self.rt.settings, self.rt.sessions, self.server, user, "bench", self.recorder.url)
        with self.rt.sessions() as session:
            connection = session.get_one(Connection, connection_id)
            ctx = self.engine.context(connection, SPEC)
        found = SPEC.capabilities[0].resources(ctx)  # type: ignore[misc]
        wanted = self.calendar_url.replace(self.server.url, self.recorder.url)
        with transaction(self.rt.sessions) as session:
            resources.reconcile(session, connection_id, CAPABILITY, found)
            session.execute(
                update(ConnectionResource)
                .where(ConnectionResource.connection_id == connection_id, ConnectionResource.external_id == wanted)
                .values(selected=True)
            )
            key = str(
                session.scalar(
                    select(ConnectionResource.id).where(
                        ConnectionResource.connection_id == connection_id, ConnectionResource.external_id == wanted
                    )
                )
            )
        return connection_id, key

    def sync(self, connection_id: uuid.UUID, key: str) -> tuple[float, Counter[str], SyncRun]:
        mark = self.recorder.mark()
        started = time.perf_counter()
        run_id = self.engine.request(connection_id, CAPABILITY, "bench", resource=key)
        assert run_id is not None
        while self.engine.execute(run_id, budget_seconds=600).action != "done":
            pass
        took = time.perf_counter() - started
        with self.rt.sessions() as session:
            run = session.get_one(SyncRun, run_id)
            session.expunge(run)
        return took, Counter(self.recorder.since(mark)), run

    def stored(self, connection_id: uuid.UUID) -> int:
        with self.rt.sessions() as session:
            return int(session.scalar(select(func.count()).where(EventRow.connection_id == connection_id)) or 0)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def shown(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {method}" for method, n in sorted(counts.items()))


def run(args: argparse.Namespace) -> int:
    base = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    redis_url = f"{base}/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    problems: list[str] = []
    figures: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "events": args.events}
    with (
        tempfile.TemporaryDirectory(dir=SHM if os.path.isdir(SHM) else None) as folder,
        running("radicale", Path(folder)) as server,
        recording(server.url) as recorder,
        database() as db_url,
    ):
        started = time.perf_counter()
        calendar_url = seed(server, args.events)
        figures["seed (files in Radicale's folder)"] = f"{time.perf_counter() - started:.2f} s"
        started = time.perf_counter()
        warm(server, calendar_url)
        figures["Radicale indexing them (not measured)"] = f"{time.perf_counter() - started:.2f} s"
        env = {
            **hub_env(db_url, redis_url, "http://127.0.0.1:9", "unused", "unused"),
            "SYNCHUB_CONNECTORS": "caldav",
            "SYNCHUB_CALDAV__ALLOW_PRIVATE_HOSTS": "true",
            "SYNCHUB_CALDAV__APP_REQUESTS_PER_MINUTE": "1000000",
            "SYNCHUB_CALDAV__CONNECTION_REQUESTS_PER_MINUTE": "1000000",
            "SYNCHUB_CALDAV__TIMEOUT_SECONDS": "120",
        }
        os.environ.update(env)
        rt = Runtime.build(load_settings())
        bench = Bench(rt, server, recorder, calendar_url)
        full_times, floor_times, paged_times, full_requests = [], [], [], Counter[str]()
        incremental_times, quiet_times = [], []
        incremental_requests, quiet_requests = Counter[str](), Counter[str]()
        for repeat in range(args.repeats):
            connection_id, key = bench.connect()
            took, requests, first = bench.sync(connection_id, key)
            full_times.append(took)
            full_requests = requests
            if first.status != "succeeded" or bench.stored(connection_id) != args.events:
                problems.append(f"full sync {repeat}: {first.status}, {bench.stored(connection_id)} events stored")
            spent, parsed = floor(server, calendar_url)
            floor_times.append(spent)
            if parsed != args.events:
                problems.append(f"floor {repeat}: {parsed} events parsed")
            spent, _ = floor(server, calendar_url, PAGE_SIZE)
            paged_times.append(spent)

            number = repeat % args.events
            head, *_, changed_body = calendar_body(number + 1).split("BEGIN:VEVENT")
            httpx.put(
                f"{calendar_url}bench-{number:05d}.ics",
                content=(
                    head
                    + "BEGIN:VEVENT"
                    + changed_body.replace(f"SUMMARY:Bench event {number}", f"SUMMARY:Changed {repeat}")
                ).encode(),
                headers={"content-type": "text/calendar; charset=utf-8"},
                auth=(server.username, server.password),
                timeout=60,
            ).raise_for_status()
            took, requests, changed = bench.sync(connection_id, key)
            incremental_times.append(took)
            incremental_requests = requests
            if requests != Counter({"REPORT": 2}) or changed.status != "succeeded" or changed.full_sync:
                problems.append(f"incremental {repeat}: {shown(requests)}, {changed.status}")
            with rt.sessions() as session:
                changed_rows = session.scalar(
                    select(func.count()).where(
                        EventRow.connection_id == connection_id, EventRow.summary == f"Changed {repeat}"
                    )
                )
            if changed_rows != 1 or bench.stored(connection_id) != args.events:
                problems.append(f"incremental {repeat}: the change not stored once ({changed_rows})")
            took, requests, _ = bench.sync(connection_id, key)
            quiet_times.append(took)
            quiet_requests = requests
            if requests != Counter({"REPORT": 1}):
                problems.append(f"quiet incremental {repeat}: {shown(requests)}")
        rt.engine.dispose()

    rates = [args.events / t for t in full_times]
    floor_rates = [args.events / t for t in floor_times]
    paged_rates = [args.events / t for t in paged_times]
    ratio = statistics.median(rates) / statistics.median(floor_rates)
    figures |= {
        "repeats": args.repeats,
        "full sync requests": shown(full_requests),
        "full sync time (s)": spread(full_times),
        "full sync events/s": spread(rates),
        "floor events/s (1 multiget + parse)": spread(floor_rates),
        "full sync / floor (goal >= 0.7)": f"{ratio:.2f}",
        "floor events/s (multigets of a page)": spread(paged_rates),
        "full sync / paged floor": f"{statistics.median(rates) / statistics.median(paged_rates):.2f}",
        "incremental (1 changed) requests": shown(incremental_requests),
        "incremental (1 changed) time (s)": spread(incremental_times),
        "incremental (none changed) requests": shown(quiet_requests),
        "incremental (none changed) time (s)": spread(quiet_times),
    }
    for name, value in figures.items():
        print(f"{name:>38}: {value}")
    for problem in problems:
        print(f"WRONG: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=None, help="default 3; 1 with --small")
    parser.add_argument("--small", action="store_true", help="300 events, one repeat (CI's check that it runs)")
    args = parser.parse_args()
    if args.small:
        args.events = 300
    if args.repeats is None:
        args.repeats = 1 if args.small else 3
    sys.exit(run(args))


if __name__ == "__main__":
    main()
