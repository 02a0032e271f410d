"""Google Calendar: calendars of 10k events synced through a real hub (API, worker) against the sandbox.

Each measurement is repeated (`--repeats`, default 3) in one run; the bench prints medians, the spread (min, max,
each value) and the date:
- full sync: a new connection's first run over a calendar of N events (each repeat its own account and calendar,
  the same content), beside two floors read right after it over the same pages (`maxResults` 2500,
  `singleEvents=false`, `showDeleted=true`, the same `timeMin`/`timeMax`) with httpx and no writes. "floor, typed
  decode" decodes each page into the connector's own msgspec structs (`connectors/google_calendar/wire.py`), the
  decoding the hub must do; "floor, no event decoded" leaves each event as raw bytes. Ratios are the sync's events/s
  over the floor's; the goal (>= 0.7) is against the typed-decode floor. The sync's time is its run's start to end
  as the worker stamps them: the calendar list, every page written and committed, the window's reconciliation.
  Beside them a write floor: the rows that sync wrote, COPYed again by psycopg alone (PostgreSQL's own text, one
  COPY and one commit per page, under another connection), and the bounds the floors set;
- incremental: one event changed with notifications dropped, then `POST /connections/{id}/sync` through the API.
  "End to end" spans from the request leaving the bench to the worker stamping the run's end (`finished_at`, in the
  transaction that commits the change): API (request to the run's row), hand-over (the row to the worker starting
  it), worker (start to end); "bench saw the run end" adds the bench's own polling;
- push: an event changed at the sandbox, which notifies the hub's channel, until `/api/v1/events` shows the change
  (p50, p95; the 1 s debounce included).

Exits non-zero when a count is off: a sync that did not succeed, stored events other than N per connection (lost
or doubled), more calls than ceil(N/2500) + 1 (the calendar list) for a full sync or other than 1 for an
incremental or pushed one, a change not stored, or a push that never became visible.

Needs PostgreSQL (SYNCHUB_TEST_PG_ADMIN_URL) and Redis (SYNCHUB_TEST_REDIS_URL, default redis://127.0.0.1:6379;
database SYNCHUB_TEST_REDIS_DB, default 14, is used and flushed): give it a Redis of its own, since two benches on
one database take each other's tasks. BENCH_WORKER_LOG=file keeps the worker's log.

    python bench/bench_calendar.py           # 10,000 events, 3 repeats, 20 notifications
    python bench/bench_calendar.py --small   # 1,000 events, 1 repeat, 2 notifications
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis
import uvicorn
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_contacts import REDIS_DB, database, hub_env  # noqa: E402

from connectors.google_calendar.wire import EVENTS_DECODER  # noqa: E402
from core.db import make_engine, session_factory, transaction  # noqa: E402
from core.identity import issue_token  # noqa: E402
from core.models import Connection, utcnow  # noqa: E402
from core.settings import load_settings  # noqa: E402
from crm.events import EVENT_COLUMNS  # noqa: E402
from crm.models import EventRow  # noqa: E402
from hub.app import create_app  # noqa: E402
from sandbox.admin_client import SandboxAdmin  # noqa: E402
from sandbox.process import running_sandbox  # noqa: E402
from sync.celery_app import make_celery  # noqa: E402
from sync.models import SyncRun  # noqa: E402
from token_vault.vault import Vault, key_ring  # noqa: E402
from webhooks.models import WebhookDelivery  # noqa: E402

AUTH = "https://www.googleapis.com/auth/"
SCOPES = [AUTH + "calendar.calendarlist.readonly", AUTH + "calendar.events.readonly"]
PAGE = 2500
TERMINAL = ("succeeded", "failed", "cancelled")
BEGUN = time.perf_counter()


class RawPage(msgspec.Struct):
    items: list[msgspec.Raw] = []
    nextPageToken: str | None = None


RAW_DECODER = msgspec.json.Decoder(RawPage)


def floor(
    sandbox: str, token: str, calendar: str, window: tuple[datetime, datetime], typed: bool
) -> tuple[float, int, int]:
    """The same pages as the hub's full pass, read with httpx and decoded, nothing written: (seconds, events,
    calls). `typed` decodes every event into the connector's structs, else each event stays raw bytes."""
    started, items, calls = time.perf_counter(), 0, 0
    params: dict[str, Any] = {
        "maxResults": PAGE,
        "singleEvents": "false",
        "showDeleted": "true",
        "timeMin": window[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeMax": window[1].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=120) as client:
        while True:
            answer = client.get(f"{sandbox}/calendar/v3/calendars/{calendar}/events", params=params)
            calls += 1
            if typed:
                page = EVENTS_DECODER.decode(answer.content)
                items += len(page.items or ())
                next_token = page.next_page_token
            else:
                raw = RAW_DECODER.decode(answer.content)
                items += len(raw.items)
                next_token = raw.nextPageToken
            if next_token is None:
                return time.perf_counter() - started, items, calls
            params["pageToken"] = next_token


def serve(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server


def wait(check: Callable[[], Any], timeout: float = 300, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    return None


def spread(values: list[float], unit: str = "", digits: int = 2) -> str:
    """Median, then min-max and every value."""
    shown = " ".join(f"{v:.{digits}f}" for v in values)
    return (
        f"{statistics.median(values):.{digits}f}{unit} (min {min(values):.{digits}f}, max {max(values):.{digits}f}; "
        f"{shown})"
    )


@dataclass
class Hub:
    admin: SandboxAdmin
    sandbox: str
    sessions: Any
    api: httpx.Client
    vault: Vault
    client_id: str
    engine: Any
    errors: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.errors.append(what)
            print(f"COUNT OFF: {what}", file=sys.stderr)

    def connect(self, account: str, user: str = "bench") -> tuple[uuid.UUID, str]:
        """A connection to the account with calendar access, made directly (tokens minted by the sandbox)."""
        tokens = self.admin.mint_tokens(account, self.client_id, ["openid", "email", *SCOPES])
        with transaction(self.sessions) as session:
            connection = Connection(
                workspace_id="bench",
                user_id=user,
                auth_provider="google",
                provider_account_id=account,
                granted_scopes=SCOPES,
                capabilities=["calendar"],
            )
            session.add(connection)
            session.flush()
            self.vault.store(session, connection, "access_token", tokens["access_token"], utcnow() + timedelta(hours=1))
            self.vault.store(session, connection, "refresh_token", tokens["refresh_token"])
            return connection.id, tokens["access_token"]

    def runs(self, connection_id: uuid.UUID) -> list[SyncRun]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SyncRun).where(SyncRun.connection_id == connection_id).order_by(SyncRun.created_at)
                )
            )

    def stored(self, connection_id: uuid.UUID) -> int:
        with self.sessions() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(EventRow).where(EventRow.connection_id == connection_id)
                )
                or 0
            )

    def next_run(self, connection_id: uuid.UUID, before: int) -> SyncRun | None:
        def ended() -> SyncRun | None:
            found = self.runs(connection_id)
            return found[-1] if len(found) > before and found[-1].status in TERMINAL else None

        run: SyncRun | None = wait(ended)
        return run


def write_floor(hub: Hub, synced: uuid.UUID, account: str) -> float:
    """The rows the sync wrote, written again under another connection of the same account with psycopg alone:
    one COPY (text, as PostgreSQL prints it) and one commit per page of 2,500, into the same table with its indexes
    and foreign key; nothing read, looked up or built in Python while timed. What writing them costs PostgreSQL."""
    target, _ = hub.connect(account, user="write-floor")
    columns = [c for c in EVENT_COLUMNS if c not in ("id", "connection_id")]
    chosen = ", ".join(columns)
    raw = hub.engine.raw_connection()
    try:
        cursor = raw.cursor()
        lines: list[bytes] = []
        query = (
            f"COPY (SELECT gen_random_uuid(), '{target}'::uuid, {chosen} FROM crm_events "
            f"WHERE connection_id = '{synced}' ORDER BY start_at) TO STDOUT"
        )
        with cursor.copy(query) as copy:
            lines.extend(bytes(line) for line in copy)
        raw.commit()
        data = b"".join(lines).splitlines(keepends=True)
        started = time.perf_counter()
        for first in range(0, len(data), PAGE):
            with cursor.copy(f"COPY crm_events (id, connection_id, {chosen}) FROM STDIN") as copy:
                copy.write(b"".join(data[first : first + PAGE]))
            raw.commit()
        took = time.perf_counter() - started
    finally:
        raw.close()
    hub.check(hub.stored(target) == hub.stored(synced), "the write floor wrote another number of rows")
    return took


def seconds(later: datetime | None, earlier: datetime | None) -> float:
    assert later is not None and earlier is not None
    return (later - earlier).total_seconds()


def full_syncs(hub: Hub, args: argparse.Namespace, accounts: list[str]) -> tuple[dict[str, Any], uuid.UUID, str]:
    """Per repeat: a new connection's first run (listing the calendars selects the primary and starts it), then the
    two floors over the same calendar."""
    sync_times, typed_times, raw_times, ratios, raw_ratios, writes = [], [], [], [], [], []
    connection_id, account, calls = uuid.uuid4(), "", 0
    bound = math.ceil(args.events / PAGE) + 1
    for index, account in enumerate(accounts):
        connection_id, token = hub.connect(account)
        hub.api.get(f"/connections/{connection_id}/capabilities/calendar/resources").raise_for_status()
        run = hub.next_run(connection_id, 0)
        hub.check(run is not None, f"full sync {index + 1} did not end")
        assert run is not None
        hub.check(run.status == "succeeded", f"full sync {index + 1}: {run.status} ({run.error})")
        hub.check(run.records_created == args.events, f"full sync {index + 1} created {run.records_created}")
        hub.check(run.api_calls <= bound, f"full sync {index + 1} made {run.api_calls} calls (bound {bound})")
        hub.check(hub.stored(connection_id) == args.events, f"full sync {index + 1} stored {hub.stored(connection_id)}")
        took, calls = seconds(run.finished_at, run.started_at), run.api_calls
        now = datetime.now(UTC).replace(microsecond=0)
        window = (now - timedelta(days=365), now + timedelta(days=365))
        typed, typed_items, typed_calls = floor(hub.sandbox, token, account, window, typed=True)
        raw, raw_items, _ = floor(hub.sandbox, token, account, window, typed=False)
        hub.check(typed_items == raw_items == args.events, f"floor read {typed_items}/{raw_items} events")
        writes.append(write_floor(hub, connection_id, account))
        sync_times.append(took)
        typed_times.append(typed)
        raw_times.append(raw)
        ratios.append(typed / took)
        raw_ratios.append(raw / took)
        print(
            f"full sync {index + 1}: {run.api_calls} calls, {took:.3f} s; floors {typed:.3f} s / {raw:.3f} s "
            f"({typed_calls} calls); write floor {writes[-1]:.3f} s",
            file=sys.stderr,
        )
    n = args.events
    read, write = statistics.median(typed_times), statistics.median(writes)
    figures = {
        "full sync (s)": spread(sync_times, digits=3),
        "full sync events/s": f"{n / statistics.median(sync_times):,.0f}",
        "floor, typed decode (s)": spread(typed_times, digits=3),
        "floor, no event decoded (s)": spread(raw_times, digits=3),
        "sync / typed floor, per run": spread(ratios),
        "sync / typed floor, of medians": f"{statistics.median(typed_times) / statistics.median(sync_times):.2f}",
        "sync / raw floor, per run": spread(raw_ratios),
        "write floor: COPY per page, psycopg (s)": spread(writes, digits=3),
        "bound from the floors, serial / overlapped": f"{read / (read + write):.2f} / {read / max(read, write):.2f}"
        " (typed floor over read + write floors: a page read, then written; reading overlapped with writing, all "
        "else free)",
        "full sync calls": f"{calls} (bound {bound}: ceil(N/{PAGE}) pages + the calendar list)",
    }
    return figures, connection_id, account


def incremental_syncs(hub: Hub, args: argparse.Namespace, connection_id: uuid.UUID, account: str) -> dict[str, Any]:
    """Per repeat: one event changed with notifications dropped, then "sync now" through the API."""
    event = hub.api.get("/events", params={"connection_id": str(connection_id), "limit": 1}).json()["events"][0]
    ends, apis, handovers, workers, seen = [], [], [], [], []
    for index in range(args.repeats):
        summary = f"Changed {index}"
        hub.admin.calendar.settings(calendar_drop_notifications=True)
        hub.admin.calendar.update_event(account, account, event["external_id"], {"summary": summary})
        hub.admin.calendar.settings(calendar_drop_notifications=False)
        before = len(hub.runs(connection_id))
        time.sleep(0.2)  # the worker idle, as a user's click finds it
        asked = datetime.now(UTC)
        started = time.perf_counter()
        hub.api.post(f"/connections/{connection_id}/sync", params={"capability": "calendar"}).raise_for_status()
        run = hub.next_run(connection_id, before)
        noticed = time.perf_counter() - started
        hub.check(run is not None, f"incremental {index + 1} did not end")
        assert run is not None
        hub.check(run.status == "succeeded" and not run.full_sync, f"incremental {index + 1}: {run.status}")
        hub.check(run.api_calls == 1, f"incremental {index + 1} made {run.api_calls} calls")
        hub.check(run.records_updated == 1 and run.records_created == 0, f"incremental {index + 1} wrote other counts")
        shown = hub.api.get("/events", params={"connection_id": str(connection_id), "limit": 1}).json()["events"][0]
        hub.check(shown["summary"] == summary, f"incremental {index + 1}: the change is not shown")
        ends.append(seconds(run.finished_at, asked) * 1000)
        apis.append(seconds(run.created_at, asked) * 1000)
        handovers.append(seconds(run.started_at, run.created_at) * 1000)
        workers.append(seconds(run.finished_at, run.started_at) * 1000)
        seen.append(noticed * 1000)
    hub.check(hub.stored(connection_id) == args.events, f"incremental: {hub.stored(connection_id)} events stored")
    return {
        "incremental calls": "1 per run (checked)",
        "incremental end to end (ms)": spread(ends, digits=1),
        "  (end to end spans)": "POST /sync leaving the bench to the run's finished_at, stamped in the transaction "
        "that commits the change; API + hand-over + worker",
        "  API: request to run row (ms)": spread(apis, digits=1),
        "  hand-over: row to worker start (ms)": spread(handovers, digits=1),
        "  worker: start to end (ms)": spread(workers, digits=1),
        "  bench saw the run end (ms)": spread(seen, digits=1),
    }


def pushes(hub: Hub, args: argparse.Namespace, connection_id: uuid.UUID, account: str) -> dict[str, Any]:
    """Each change notified by the sandbox to the hub's channel: time until the API shows it."""
    event = hub.api.get("/events", params={"connection_id": str(connection_id), "limit": 1}).json()["events"][0]
    before = len(hub.runs(connection_id))
    latencies = []
    for n in range(args.notifications):
        summary = f"Pushed {n}"
        started = time.perf_counter()
        hub.admin.calendar.update_event(account, account, event["external_id"], {"summary": summary})

        def shown(summary: str = summary) -> bool:
            found = hub.api.get("/events", params={"connection_id": str(connection_id), "limit": 1}).json()
            return bool(found["events"][0]["summary"] == summary)

        visible = wait(shown, timeout=60, interval=0.02)
        hub.check(bool(visible), f"push {n + 1} never became visible")
        if not visible:  # what the sandbox sent, and the runs since, to tell a lost delivery from a lost run
            for sent in hub.admin.calendar.notifications(account=account)[-2:]:
                print(f"  notification {sent['message_number']}: {sent['state']} {sent['attempts']}", file=sys.stderr)
            for late in hub.runs(connection_id)[-3:]:
                print(f"  run {late.trigger} {late.status} {late.created_at} {late.started_at}", file=sys.stderr)
            with hub.sessions() as session:
                for d in session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(3)):
                    print(
                        f"  delivery {d.id} {d.dedupe_key[-6:]} {d.status} got {d.received_at} nb {d.not_before} "
                        f"done {d.finished_at} routed {d.routed} {d.error}",
                        file=sys.stderr,
                    )
        latencies.append(time.perf_counter() - started)
    pushed = wait(lambda: (r := hub.runs(connection_id)[before:]) and all(x.status in TERMINAL for x in r) and r, 60)
    runs = list(pushed or [])
    hub.check(all(r.status == "succeeded" and r.api_calls == 1 for r in runs), "a pushed run failed or made >1 call")
    hub.check(hub.stored(connection_id) == args.events, f"push: {hub.stored(connection_id)} events stored")
    latencies.sort()
    p95 = latencies[max(0, math.ceil(len(latencies) * 0.95) - 1)]
    return {
        "notification to API p50 / p95 (s)": f"{statistics.median(latencies):.2f} / {p95:.2f} "
        f"(min {latencies[0]:.2f}, max {latencies[-1]:.2f}; {len(latencies)} changes, {len(runs)} runs)",
    }


def run(args: argparse.Namespace) -> int:
    print(f"{time.perf_counter() - BEGUN:.1f} s: seeding", file=sys.stderr)
    base = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    redis_url = f"{base}/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    with running_sandbox(seed=11) as sandbox, SandboxAdmin(sandbox, timeout=600) as admin, database() as db_url:
        port = int(os.environ.get("BENCH_HUB_PORT", "0")) or 18000 + os.getpid() % 1000
        client_id, client_secret = f"bench-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(24)
        admin.register_client(client_id, client_secret, [f"http://127.0.0.1:{port}/oauth/google/callback"])
        env = {
            **hub_env(db_url, redis_url, sandbox, client_id, client_secret),
            "SYNCHUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SYNCHUB_CONNECTORS": "google_calendar",
            "SYNCHUB_GOOGLE_CALENDAR__PAGE_SIZE": str(PAGE),
            "SYNCHUB_GOOGLE_CALENDAR__PUSH_ALLOW_HTTP": "true",
            "SYNCHUB_GOOGLE_CALENDAR__APP_REQUESTS_PER_MINUTE": "1000000",
            "SYNCHUB_GOOGLE_CALENDAR__CONNECTION_REQUESTS_PER_MINUTE": "1000000",
        }
        os.environ.update(env)
        settings = load_settings()
        engine = make_engine(settings.database_url)
        sessions = session_factory(engine)
        server = serve(create_app(settings, engine), port)
        logged = os.environ.get("BENCH_WORKER_LOG")  # a file for the worker's log (INFO), else none
        if logged:
            env["SYNCHUB_LOG_LEVEL"] = "INFO"
        log = open(logged, "w") if logged else subprocess.DEVNULL  # noqa: SIM115 (closed with the worker)
        worker = subprocess.Popen(
            [sys.executable, "-m", "hub", "worker", "--queues", "webhooks,sync,maintenance", "--concurrency", "2"],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            accounts = [f"cal-{uuid.uuid4().hex[:6]}@sandbox.test" for _ in range(args.repeats)]
            seeded = []
            for account in accounts:  # each repeat its own account: a change notifies only that calendar's channel
                admin.seed_account(account)
                seeded.append(admin.calendar.seed_events(account, account, args.events, days=365)["seeded"])
            # The worker started while the calendars were seeded; the first full sync waits for nothing but its run.
            make_celery(settings).send_task("synchub.maintenance.ping", queue="maintenance").get(timeout=120)
            assert settings.identity.jwt_secret is not None
            bearer = issue_token(settings.identity.jwt_secret.get_secret_value(), "bench", "bench", 3600)
            api = httpx.Client(
                base_url=f"http://127.0.0.1:{port}/api/v1", headers={"authorization": f"Bearer {bearer}"}, timeout=120
            )
            hub = Hub(admin, sandbox, sessions, api, Vault(key_ring(settings.vault)), client_id, engine)
            hub.check(seeded == [args.events] * args.repeats, f"seeded {seeded}")
            print(f"{time.perf_counter() - BEGUN:.1f} s: full syncs", file=sys.stderr)
            figures, connection_id, account = full_syncs(hub, args, accounts)
            print(f"{time.perf_counter() - BEGUN:.1f} s: incremental", file=sys.stderr)
            figures.update(incremental_syncs(hub, args, connection_id, account))
            print(f"{time.perf_counter() - BEGUN:.1f} s: push", file=sys.stderr)
            figures.update(pushes(hub, args, connection_id, account))
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            server.should_exit = True
            engine.dispose()
        print(f"{time.perf_counter() - BEGUN:.1f} s: done", file=sys.stderr)
        print(
            f"bench_calendar {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.events:,} events, {args.repeats} repeats, "
            f"{args.notifications} notifications; medians (min, max; each value)"
        )
        for name, value in figures.items():
            print(f"{name:>40}: {value}")
        if hub.errors:
            print(f"{len(hub.errors)} count(s) off: {'; '.join(hub.errors)}")
            return 1
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--notifications", type=int, default=20)
    parser.add_argument("--small", action="store_true", help="1,000 events, 1 repeat, 2 notifications")
    args = parser.parse_args()
    if args.small:
        args.events, args.repeats, args.notifications = 1000, 1, 2
    sys.exit(run(args))


if __name__ == "__main__":
    main()
