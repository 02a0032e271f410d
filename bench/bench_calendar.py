"""Google Calendar: a calendar of 10k events synced through a real hub (API, worker) against the sandbox.

Prints figures, asserts nothing:
- the full sync of the calendar (API calls, time, events/s) next to a floor that reads the same pages with httpx
  and decodes them (msgspec), with no writes;
- one event changed, with notifications dropped: the incremental sync's API calls and time through the worker
  (from the request to the run's end);
- push: an event changed at the sandbox, which notifies the hub's channel, until the API shows the change
  (p50, p95), the 1 s debounce included.

Needs PostgreSQL (SYNCHUB_TEST_PG_ADMIN_URL) and Redis (SYNCHUB_TEST_REDIS_URL, default redis://127.0.0.1:6379;
database SYNCHUB_TEST_REDIS_DB, default 14, is used and flushed).

    python bench/bench_calendar.py           # 10,000 events, 20 notifications
    python bench/bench_calendar.py --small   # 1,000 events, 5 notifications
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_contacts import REDIS_DB, database, hub_env  # noqa: E402

from core.db import make_engine, session_factory, transaction  # noqa: E402
from core.identity import issue_token  # noqa: E402
from core.models import Connection, utcnow  # noqa: E402
from core.settings import load_settings  # noqa: E402
from hub.app import create_app  # noqa: E402
from sandbox.admin_client import SandboxAdmin  # noqa: E402
from sandbox.process import running_sandbox  # noqa: E402
from sync.models import SyncRun  # noqa: E402
from token_vault.vault import Vault, key_ring  # noqa: E402

AUTH = "https://www.googleapis.com/auth/"
SCOPES = [AUTH + "calendar.calendarlist.readonly", AUTH + "calendar.events.readonly"]
PAGE = 2500
TERMINAL = ("succeeded", "failed", "cancelled")


class Floor(msgspec.Struct):
    items: list[msgspec.Raw] = []
    nextPageToken: str | None = None


FLOOR = msgspec.json.Decoder(Floor)


def floor(sandbox: str, token: str, calendar: str, window: tuple[datetime, datetime]) -> tuple[float, int]:
    """The same pages as the hub's full pass, read with httpx and decoded, nothing written."""
    started, items = time.perf_counter(), 0
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
            page = FLOOR.decode(answer.content)
            items += len(page.items)
            if page.nextPageToken is None:
                return time.perf_counter() - started, items
            params["pageToken"] = page.nextPageToken


def serve(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server


def wait(check: Any, timeout: float = 300, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise SystemExit("timed out")


def run(args: argparse.Namespace) -> None:
    base = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    redis_url = f"{base}/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    account = f"cal-{uuid.uuid4().hex[:6]}@sandbox.test"
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
        admin.seed_account(account)
        seeded = admin.calendar.seed_events(account, account, args.events, days=365)
        os.environ.update(env)
        settings = load_settings()
        engine = make_engine(settings.database_url)
        sessions = session_factory(engine)
        tokens = admin.mint_tokens(account, client_id, ["openid", "email", *SCOPES])
        vault = Vault(key_ring(settings.vault))
        with transaction(sessions) as session:
            connection = Connection(
                workspace_id="bench",
                user_id="bench",
                auth_provider="google",
                provider_account_id=account,
                granted_scopes=SCOPES,
                capabilities=["calendar"],
            )
            session.add(connection)
            session.flush()
            vault.store(session, connection, "access_token", tokens["access_token"], utcnow() + timedelta(hours=1))
            vault.store(session, connection, "refresh_token", tokens["refresh_token"])
            connection_id = connection.id
        server = serve(create_app(settings, engine), port)
        worker = subprocess.Popen(
            [sys.executable, "-m", "hub", "worker", "--queues", "webhooks,sync,maintenance", "--concurrency", "2"],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert settings.identity.jwt_secret is not None
        bearer = issue_token(settings.identity.jwt_secret.get_secret_value(), "bench", "bench", 3600)
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1", headers={"authorization": f"Bearer {bearer}"}, timeout=120
        )
        try:
            figures = measure(args, admin, sandbox, sessions, api, connection_id, account, tokens["access_token"])
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            server.should_exit = True
            engine.dispose()
        figures["seeded"] = seeded
        for name, value in figures.items():
            print(f"{name:>34}: {value}")


def runs(sessions: Any, connection_id: uuid.UUID) -> list[SyncRun]:
    with sessions() as session:
        return list(session.query(SyncRun).filter(SyncRun.connection_id == connection_id).order_by(SyncRun.created_at))


def measure(
    args: argparse.Namespace,
    admin: SandboxAdmin,
    sandbox: str,
    sessions: Any,
    api: httpx.Client,
    connection_id: uuid.UUID,
    account: str,
    token: str,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    # Full sync: listing the calendars selects the primary and starts its first run (a channel opens too).
    listed = api.get(f"/connections/{connection_id}/capabilities/calendar/resources").json()["resources"]
    primary = next(r["id"] for r in listed if r["selected"])
    print("full sync running", file=sys.stderr)
    full = wait(lambda: next((r for r in runs(sessions, connection_id) if r.status in TERMINAL), None))
    seconds = (full.finished_at - full.started_at).total_seconds()
    figures["full sync"] = f"{full.records_created} events, {full.api_calls} calls, {seconds:.2f} s"
    now = datetime.now(UTC).replace(microsecond=0)
    floor_seconds, floor_items = floor(sandbox, token, account, (now - timedelta(days=365), now + timedelta(days=365)))
    figures["floor (httpx + decode)"] = f"{floor_items} events, {floor_seconds:.2f} s"
    figures["full sync / floor throughput"] = f"{(full.records_created / seconds) / (floor_items / floor_seconds):.2f}"

    # One event changed, notifications dropped: "sync now" reads it with one incremental call.
    event = api.get("/events", params={"connection_id": str(connection_id), "limit": 1}).json()["events"][0]
    admin.calendar.settings(calendar_drop_notifications=True)
    admin.calendar.update_event(account, account, event["external_id"], {"summary": "Changed once"})
    admin.calendar.settings(calendar_drop_notifications=False)
    before = len(runs(sessions, connection_id))
    asked = time.perf_counter()
    api.post(f"/connections/{connection_id}/sync", params={"capability": "calendar"})
    done = wait(lambda: (r := runs(sessions, connection_id)) and len(r) > before and r[-1].status in TERMINAL and r[-1])
    in_worker = (done.finished_at - done.started_at).total_seconds() * 1000
    figures["incremental sync"] = (
        f"{done.api_calls} call(s), {in_worker:.0f} ms in the worker, "
        f"{(time.perf_counter() - asked) * 1000:.0f} ms from the request"
    )
    del primary

    print("incremental done; push", file=sys.stderr)
    # Push: each change is notified by the sandbox; time until the API shows it.
    latencies = []
    for n in range(args.notifications):
        summary = f"Pushed {n}"
        started = time.perf_counter()
        admin.calendar.update_event(account, account, event["external_id"], {"summary": summary})
        wait(
            lambda summary=summary: (
                api.get("/events", params={"connection_id": str(connection_id), "limit": 1}).json()["events"][0][
                    "summary"
                ]
                == summary
            ),
            timeout=60,
            interval=0.02,
        )
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95 + 0.5) - 1)]
    figures["notification to API p50 / p95"] = f"{statistics.median(latencies):.2f} s / {p95:.2f} s"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--notifications", type=int, default=20)
    parser.add_argument("--small", action="store_true", help="1,000 events, 5 notifications")
    args = parser.parse_args()
    if args.small:
        args.events, args.notifications = 1000, 5
    run(args)


if __name__ == "__main__":
    main()
