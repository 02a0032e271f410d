"""Shared quota use: several worker processes keep many accounts syncing against one app quota at the sandbox.

Prints figures, asserts nothing. The sandbox enforces `--quota` requests per sliding minute for the app (it answers
429 past it); the hub is told the same quota and must keep under it with its shared Redis bucket while using as
much of it as it can. Every account runs full syncs back to back (its sync token is expired at the sandbox after
each run) until the time is up. Needs PostgreSQL (SYNCHUB_TEST_PG_ADMIN_URL) and Redis (SYNCHUB_TEST_REDIS_URL,
default redis://127.0.0.1:6379; database SYNCHUB_TEST_REDIS_DB, default 14, is used and flushed).

    python bench/bench_throttle.py           # 4 workers, 40 accounts x 2,500 contacts, 600/min, 5 minutes
    python bench/bench_throttle.py --small   # 2 workers, 4 accounts x 250 contacts, 120/min, 7 s (a smoke
                                             # pass: a sliding minute needs the full run to mean anything)
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_contacts import REDIS_DB, database, hub_env, make_connection  # noqa: E402

from core.db import make_engine, session_factory  # noqa: E402
from core.settings import load_settings  # noqa: E402
from sandbox.admin_client import SandboxAdmin  # noqa: E402
from sandbox.process import running_sandbox  # noqa: E402
from sync.celery_app import make_celery  # noqa: E402
from sync.dispatch import hand_over  # noqa: E402
from sync.models import SyncRun  # noqa: E402
from sync.runtime import Runtime  # noqa: E402
from sync.wiring import build_engine  # noqa: E402

PAGE_SIZE = 50
PEOPLE = "/v1/people"
TERMINAL = ("succeeded", "failed", "cancelled")


def sliding_peak(times: list[float], window: float = 60.0) -> int:
    """The most requests any `window` seconds held."""
    peak, start = 0, 0
    for end, now in enumerate(times):
        while times[start] <= now - window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def run(args: argparse.Namespace) -> int:
    base = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    redis_url = f"{base}/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    with running_sandbox(seed=7) as sandbox, SandboxAdmin(sandbox, timeout=600) as admin, database() as db_url:
        client_id, client_secret = f"bench-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(24)
        admin.register_client(client_id, client_secret, ["http://127.0.0.1:9/oauth/google/callback"])
        env = {
            **hub_env(db_url, redis_url, sandbox, client_id, client_secret),
            "SYNCHUB_GOOGLE_CONTACTS__PAGE_SIZE": str(PAGE_SIZE),
            "SYNCHUB_GOOGLE_CONTACTS__APP_REQUESTS_PER_MINUTE": str(args.quota),
            "SYNCHUB_CELERY__SYNC_TIME_BUDGET": "20",
        }
        accounts = [f"quota-{i}@sandbox.test" for i in range(args.accounts)]
        for account in accounts:
            admin.seed_account(account, contacts=args.contacts)
        connections = {make_connection(env, admin, a, client_id, f"u{i}"): a for i, a in enumerate(accounts)}
        os.environ.update(env)
        settings = load_settings()
        engine = make_engine(settings.database_url)
        rt = Runtime(settings, engine, session_factory(engine), redis.Redis.from_url(redis_url))
        sync, celery = build_engine(rt), make_celery(settings)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "hub", "worker", "--queues", "sync", "--concurrency", "1"],
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for _ in range(args.workers)
        ]
        try:
            assert celery.send_task("synchub.maintenance.ping", queue="sync").get(timeout=60)
            admin.set_quota(per_app=args.quota, window_seconds=60, path_prefix=PEOPLE)
            mark = admin.request_log()[-1]["id"] if admin.request_log() else 0
            started = time.time()
            runs: dict[uuid.UUID, uuid.UUID | None] = dict.fromkeys(connections)
            finished, failed = 0, 0
            while time.time() < started + args.seconds:
                for connection_id, run_id in runs.items():
                    if run_id is not None:
                        with rt.sessions() as session:
                            status = session.get_one(SyncRun, run_id).status
                        if status not in TERMINAL:
                            continue
                        finished += status == "succeeded"
                        failed += status != "succeeded"
                        admin.expire_sync_tokens(connections[connection_id])
                    new = sync.request(connection_id, "contacts", "bench")
                    runs[connection_id] = new
                    if new is not None:
                        hand_over(rt.sessions, celery, new)
                time.sleep(0.5)
            ended = time.time()
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.wait()
            engine.dispose()
        log = [e for e in admin.request_log(mark) if e["path"].startswith(PEOPLE) and started <= e["time"] <= ended]
    redis.Redis.from_url(redis_url).flushdb()
    return report(args, log, started, ended, finished, failed)


def report(args: argparse.Namespace, log: list[dict], started: float, ended: float, done: int, failed: int) -> int:
    """Print the figures; 1 if the provider refused a request (429) or a sliding minute held more than the quota."""
    answered = sorted(e["time"] for e in log if e["status"] != 429)
    refused = [e for e in log if e["status"] == 429]
    steady_from = started + args.warmup
    steady = [t for t in answered if t >= steady_from]
    steady_minutes = (ended - steady_from) / 60
    per_minute = len(steady) / steady_minutes if steady_minutes > 0 else float("nan")
    print(
        f"workers {args.workers} · accounts {args.accounts} x {args.contacts} contacts · page size {PAGE_SIZE} · "
        f"quota {args.quota}/min · {ended - started:.0f} s"
    )
    print(f"requests answered: {len(answered)} · quota errors (429): {len(refused)}")
    print(f"requests per minute over the steady {steady_minutes:.1f} min (after {args.warmup:.0f} s): {per_minute:.1f}")
    print(f"share of the quota used: {per_minute / args.quota:.1%}")
    print(f"busiest sliding minute: {sliding_peak(answered)} requests (quota {args.quota})")
    minutes = int((ended - started) // 60)
    for minute in range(minutes):
        count = sum(started + 60 * minute <= t < started + 60 * (minute + 1) for t in answered)
        print(f"  minute {minute + 1}: {count}")
    print(f"full syncs finished: {done} succeeded, {failed} not")
    wrong = len(refused) > 0 or sliding_peak(answered) > args.quota
    if wrong:
        print("WRONG: the hub went past the provider's quota", file=sys.stderr)
    return 1 if wrong else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--contacts", type=int, default=2500)
    parser.add_argument("--quota", type=int, default=600, help="app requests per sliding minute")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--warmup", type=float, default=60, help="seconds left out of the steady figures")
    parser.add_argument("--small", action="store_true", help="a quick pass (CI keeps it from rotting)")
    args = parser.parse_args()
    if args.small:
        args.workers, args.accounts, args.contacts, args.quota, args.seconds, args.warmup = 2, 4, 250, 120, 7, 2
    sys.exit(run(args))


if __name__ == "__main__":
    main()
