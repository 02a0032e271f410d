"""A fleet of connections: what a no-op incremental Google Contacts run costs end to end, what beat's tick costs
with many runs due and with none, and how a burst of runs fares under the app's quota.

Prints figures and asserts no time; exits non-zero when a run is lost (a due stream without a succeeded run) or
doubled (two runs of one stream in a round), or when a no-op run makes more than one provider call.

Everything goes through real processes: the sandbox, one `synchub worker` (queues sync and maintenance, its default
concurrency) and the tick as beat sends it (`synchub.maintenance.tick`). It starts its own redis-server (so every
command counted is the hub's or Celery's) and uses a scratch PostgreSQL database (SYNCHUB_TEST_PG_ADMIN_URL, a role
that may create databases). Per no-op run it prints:
- runs/s from the tick's start until every due run has ended;
- worker CPU: user + system time of the worker's whole process group (consumer and pool children) from /proc;
- commits: `xact_commit` of the database in pg_stat_database (tick included; the benchmark's own statements are
  subtracted; the worker's backends are ended before each reading so that their counts are flushed);
- Redis commands as clients sent them (MONITOR; a Lua script counts once), the hub's connections and Celery's
  apart, with the server's `INFO commandstats` total (which counts each command inside a script too) beside;
- provider calls, from the sandbox's request log; and how often Celery executed each run (`task_prerun`, counted
  by a hook the worker loads from this benchmark's sitecustomize, never from the run's own counter).
The tick alone is timed in this process (the task's own body) on connections and schedules inserted by SQL.

The other connectors' no-op figures (Calendar, CalDAV, Lead Ads) are not measured yet.

    python bench/bench_fleet.py           # 500 connections x 3 rounds; tick at 300/3,000/10,000 due; idle tick
                                          # over 100,000; burst of 300 under 600/min
    python bench/bench_fleet.py --small   # 50 connections; tick at 300/1,000; idle tick over 10,000; burst of 100
                                          # under 600/min
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import math
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_contacts import SCOPE, database, hub_env  # noqa: E402

from core.db import make_engine, session_factory, transaction  # noqa: E402
from core.models import utcnow  # noqa: E402
from core.settings import load_settings  # noqa: E402
from sandbox.admin_client import SandboxAdmin  # noqa: E402
from sandbox.process import running_sandbox  # noqa: E402
from sync.celery_app import make_celery  # noqa: E402
from sync.throttle import Bucket  # noqa: E402
from tests.google.sealed import sealed_contacts_connection  # noqa: E402
from tests.servers import kill_group, running_redis, spawn  # noqa: E402
from token_vault.vault import Vault, key_ring  # noqa: E402

PEOPLE = "/v1/people"
TICK_TASK = "synchub.maintenance.tick"
TERMINAL = ("succeeded", "failed", "cancelled")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STOP = "bench-fleet-monitor-stop"

# Loaded by the worker (and so by its forked pool children) through PYTHONPATH: one line per task Celery starts.
PRERUN_HOOK = """
import json, os
_path = os.environ.get("BENCH_FLEET_PRERUN_LOG")
if _path:
    from celery import signals

    def _bench_prerun(task_id=None, task=None, args=None, kwargs=None, **_):
        line = json.dumps({"task": getattr(task, "name", ""), "args": args, "kwargs": kwargs}) + "\\n"
        fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    signals.task_prerun.connect(_bench_prerun, weak=False)
"""


def plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """Median, and min-max when there is more than one value."""
    if not values:
        return "n/a"
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def percentile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))] if ordered else 0


class Database:
    """The benchmark's own statements, each on a fresh autocommit connection, counted so that they are left out
    of the commits it reports (a backend's counts reach pg_stat_database when it exits)."""

    def __init__(self, url: str) -> None:
        self.url = plain(url)
        self.own = 0

    def run(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as connection:
            self.own += 1
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def settle(self) -> None:
        """End every other backend of this database (the worker's pool reconnects at its next checkout), so the
        counts they hold are flushed to pg_stat_database."""
        self.run(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() "
            "and pid <> pg_backend_pid() and backend_type = 'client backend'"
        )
        deadline = time.monotonic() + 30
        while self.run(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
            "and backend_type = 'client backend'"
        )[0][0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the database's other backends did not end")
            time.sleep(0.01)
        time.sleep(0.05)  # a backend leaves pg_stat_activity just before it flushes its counts

    def commits(self) -> int:
        """xact_commit as of now, without the benchmark's own statements."""
        total = int(self.run("select xact_commit from pg_stat_database where datname = current_database()")[0][0])
        return total - (self.own - 1)  # this reading's own commit is not counted yet


class RedisCounter:
    """Commands as Redis received them (MONITOR), by client connection; a connection that touched a `synchub:` key
    is the hub's, any other Celery's (kombu's queues, unacked index, results). Commands run inside a Lua script are
    left out: the script counts once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.by_client: dict[str, list[str]] = defaultdict(list)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self) -> RedisCounter:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _listen(self) -> None:
        client = redis.Redis.from_url(self.url)
        with client.monitor() as monitor:
            self._ready.set()
            while True:
                command = monitor.next_command()
                if command["command"] == f"ECHO {STOP}":
                    break
                if command.get("client_type") == "lua":
                    continue
                who = f"{command.get('client_address')}:{command.get('client_port')}"
                self.by_client[who].append(command["command"])
        client.close()

    def __exit__(self, *exc: object) -> None:
        stopper = redis.Redis.from_url(self.url)
        stopper.echo(STOP)
        stopper.close()
        self._thread.join(10)

    def counts(self) -> dict[str, int]:
        hub, celery = 0, 0
        for commands in self.by_client.values():
            if any("synchub:" in command for command in commands):
                hub += len(commands)
            else:
                celery += len(commands)
        return {"hub": hub, "celery": celery}


def commandstats(client: redis.Redis) -> int:
    return sum(int(stats["calls"]) for stats in client.info("commandstats").values())


def group_cpu(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    used = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            used += (int(fields[11]) + int(fields[12])) / tick
    return used


def executions(log: Path, offset: int) -> tuple[Counter[str], int]:
    """How often Celery started a task naming each run (a batch names several), from the worker's task_prerun
    lines after `offset`; and the new offset."""
    counted: Counter[str] = Counter()
    if not log.exists():
        return counted, offset
    with log.open("rb") as lines:
        lines.seek(offset)
        for line in lines:
            entry = json.loads(line)
            if entry["task"].startswith("synchub.sync."):
                counted.update(set(UUID.findall(json.dumps([entry["args"], entry["kwargs"]]))))
        return counted, lines.tell()


@dataclass
class Fleet:
    args: argparse.Namespace
    env: dict[str, str]
    db: Database
    redis_url: str
    admin: SandboxAdmin
    folder: Path
    connections: list[uuid.UUID] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None
    prerun_offset: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def prerun_log(self) -> Path:
        return self.folder / "prerun.jsonl"

    def start_worker(self, **overrides: str) -> None:
        hook = self.folder / "hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(PRERUN_HOOK)
        env = {
            **os.environ,
            **self.env,
            **overrides,
            "BENCH_FLEET_PRERUN_LOG": str(self.prerun_log),
            "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]),
        }
        with (self.folder / "worker.log").open("ab") as log:
            self.worker = spawn(
                [sys.executable, "-m", "hub", "worker", "--queues", "sync,maintenance"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        celery = make_celery(self.settings(overrides))
        assert celery.send_task("synchub.maintenance.ping", queue="maintenance").get(timeout=60)["database"]

    def stop_worker(self) -> None:
        if self.worker is not None:
            # Between rounds every run has ended and its message was acknowledged: a warm shutdown would only
            # cost seconds of waiting for the pool children.
            kill_group(self.worker, signal.SIGKILL)
            self.worker = None

    def settings(self, overrides: dict[str, str] | None = None) -> Any:
        saved = dict(os.environ)
        os.environ.update({**self.env, **(overrides or {})})
        try:
            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def clear_buckets(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter("synchub:bucket:*"):
            client.delete(key)
        client.close()

    def make_due(self, ids: list[uuid.UUID]) -> dt.datetime:
        rows = self.db.run(
            "update schedules set next_run_at = now() - interval '1 second' where connection_id = any(%s) "
            "returning now()",
            (ids,),
        )
        return rows[0][0] if rows else utcnow()

    def tick_round(self, ids: list[uuid.UUID], overrides: dict[str, str] | None = None) -> dict[str, Any]:
        """Make `ids` due, send one tick as beat does, and measure until each due stream's run has ended."""
        assert self.worker is not None
        since = self.make_due(ids)
        self.db.settle()
        client = redis.Redis.from_url(self.redis_url)
        celery = make_celery(self.settings(overrides))
        commits_before = self.db.commits()
        mark = (self.admin.request_log() or [{"id": 0}])[-1]["id"]
        _, self.prerun_offset = executions(self.prerun_log, self.prerun_offset)
        stats_before = commandstats(client)
        with RedisCounter(self.redis_url) as counter:
            cpu_before = group_cpu(self.worker.pid)
            started = time.perf_counter()
            celery.send_task(TICK_TASK, queue="maintenance", ignore_result=True)
            with psycopg.connect(self.db.url, autocommit=True) as poll:
                deadline = time.monotonic() + 600
                while True:
                    self.db.own += 1
                    row = poll.execute(
                        "select count(*), count(*) filter (where status in ('succeeded', 'failed', 'cancelled')) "
                        "from sync_runs where connection_id = any(%s) and created_at >= %s",
                        (ids, since),
                    ).fetchone()
                    assert row is not None
                    if row[0] >= len(ids) and row[0] == row[1]:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"runs did not end: {row[1]} of {row[0]} ended, {len(ids)} due")
                    time.sleep(0.01)
            elapsed = time.perf_counter() - started
            cpu = group_cpu(self.worker.pid) - cpu_before
        stats = commandstats(client) - stats_before - 1  # less this reading's own INFO
        client.close()
        self.db.settle()
        commits = self.db.commits() - commits_before
        ran, self.prerun_offset = executions(self.prerun_log, self.prerun_offset)
        runs = self.db.run(
            "select id::text, connection_id, status, api_calls, attempts from sync_runs "
            "where connection_id = any(%s) and created_at >= %s",
            (ids, since),
        )
        calls = [e for e in self.admin.request_log(mark) if e["path"].startswith(PEOPLE)]
        self.check(ids, runs, calls)
        n = len(runs)
        return {
            "runs": n,
            "elapsed": elapsed,
            "runs_per_s": n / elapsed,
            "cpu_ms": 1000 * cpu / n,
            "commits": commits / n,
            "redis_hub": counter.counts()["hub"] / n,
            "redis_celery": counter.counts()["celery"] / n,
            "commandstats": stats / n,
            "provider_calls": len(calls) / n,
            "refused_429": sum(1 for e in calls if e["status"] == 429),
            "executions": [ran.get(run[0], 0) for run in runs],
            "attempts": [int(run[4]) for run in runs],
        }

    def check(self, ids: list[uuid.UUID], runs: list[tuple[Any, ...]], calls: list[dict[str, Any]]) -> None:
        per_stream = Counter(run[1] for run in runs)
        succeeded = {run[1] for run in runs if run[2] == "succeeded"}
        lost = [i for i in ids if i not in succeeded]
        doubled = [i for i, count in per_stream.items() if count > 1]
        if lost:
            self.failures.append(f"{len(lost)} due stream(s) without a succeeded run, e.g. {lost[0]}")
        if doubled:
            self.failures.append(f"{len(doubled)} stream(s) with more than one run in a round, e.g. {doubled[0]}")
        over = [run for run in runs if run[3] > 1]
        answered = [e for e in calls if e["status"] != 429]
        if over or len(answered) > len(runs):
            self.failures.append(
                f"a no-op run made more than one provider call ({len(over)} runs count more than one; "
                f"{len(answered)} calls answered for {len(runs)} runs)"
            )


def create_connections(env: dict[str, str], admin: SandboxAdmin, account: str, client_id: str, n: int) -> list[Any]:
    """N Google connections of one sandbox account (each another user), sharing one minted grant, each with its
    schedule (as connecting makes it)."""
    os.environ.update(env)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    tokens = admin.mint_tokens(account, client_id, [SCOPE])
    vault = Vault(key_ring(settings.vault))
    ids = []
    with transaction(session_factory(engine)) as session:
        for i in range(n):
            connection = sealed_contacts_connection(
                session,
                vault,
                tokens,
                workspace="bench",
                user=f"fleet-{i}",
                account=account,
                valid_for=dt.timedelta(hours=2),
                scheduled=True,
            )
            ids.append(connection.id)
    engine.dispose()
    return ids


INSERT_FLEET = """
with made as (
  insert into connections (id, workspace_id, user_id, auth_provider, provider_account_id, status, granted_scopes,
      capabilities, sharing, created_at, updated_at, refresh_failures)
  select gen_random_uuid(), %(workspace)s, 'u' || i, 'google', 'acct-' || i, 'active', %(scopes)s::json,
      '["contacts"]'::json, 'owner', now(), now(), 0
  from generate_series(1, %(n)s) as i
  returning id
)
insert into schedules (connection_id, capability, resource, next_run_at, failures)
select id, 'contacts', '', now() + %(due_in)s * interval '1 second', 0 from made
"""


def insert_fleet(db: Database, workspace: str, n: int, due_in: float) -> None:
    db.run(INSERT_FLEET, {"workspace": workspace, "n": n, "scopes": json.dumps([SCOPE]), "due_in": due_in})
    db.run("analyze connections")
    db.run("analyze schedules")


def queued_run_ids(client: redis.Redis) -> list[str]:
    """Run ids named by the Celery messages waiting in the `sync` queue."""
    named = []
    for raw in client.lrange("sync", 0, -1):
        message = json.loads(raw)
        body = base64.b64decode(message["body"]) if message["properties"].get("body_encoding") == "base64" else None
        args = json.loads(body)[0] if body else []
        named += UUID.findall(json.dumps(args))
    return named


def tick_alone(db: Database, redis_url: str, due: int, tick: Any, failures: list[str]) -> float:
    """The tick's own body in this process with `due` streams due (rows by SQL) and no worker: seconds."""
    workspace = f"bench-tick-{due}"
    insert_fleet(db, workspace, due, -1)
    client = redis.Redis.from_url(redis_url)
    client.delete("sync")
    started = time.perf_counter()
    tick()
    elapsed = time.perf_counter() - started
    rows = db.run(
        "select count(*), count(r.enqueued_at), count(distinct r.connection_id) from sync_runs r "
        "join connections c on c.id = r.connection_id where c.workspace_id = %s",
        (workspace,),
    )
    runs, sent_rows, streams = rows[0]
    named = queued_run_ids(client)
    if runs != due or streams != due or sent_rows != due:
        failures.append(f"tick at {due} due: {runs} runs for {streams} streams, {sent_rows} marked sent")
    if len(named) != due or len(set(named)) != due:
        failures.append(f"tick at {due} due: {len(named)} runs named in messages ({len(set(named))} distinct)")
    client.delete("sync")
    client.close()
    db.run("delete from connections where workspace_id = %s", (workspace,))
    return elapsed


def idle_ticks(db: Database, n: int, tick: Any, repeats: int) -> list[float]:
    insert_fleet(db, "bench-idle", n, 24 * 3600)
    db.run("vacuum analyze connections")
    db.run("vacuum analyze schedules")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        tick()
        times.append(time.perf_counter() - started)
    db.run("delete from connections where workspace_id = 'bench-idle'")
    return times


def run(args: argparse.Namespace) -> int:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-fleet-")))
        redis_server = stack.enter_context(running_redis(folder))
        sandbox = stack.enter_context(running_sandbox(seed=18))
        admin = stack.enter_context(SandboxAdmin(sandbox, timeout=600))
        db_url = stack.enter_context(database())
        client_id, client_secret = f"fleet-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(24)
        admin.register_client(client_id, client_secret, ["http://127.0.0.1:9/oauth/google/callback"])
        account = "fleet@sandbox.test"
        admin.seed_account(account, contacts=1)
        env = hub_env(db_url, redis_server.url, sandbox, client_id, client_secret)
        pool = max(args.connections, args.burst)
        fleet = Fleet(args, env, Database(db_url), redis_server.url, admin, folder)
        fleet.connections = create_connections(env, admin, account, client_id, pool)
        stack.callback(fleet.stop_worker)

        fleet.start_worker()
        warm = fleet.tick_round(fleet.connections)  # every connection's first (full) sync, and warm pool children
        rounds = [fleet.tick_round(fleet.connections[: args.connections]) for _ in range(args.rounds)]
        fleet.stop_worker()

        quota_env = {"SYNCHUB_GOOGLE_CONTACTS__APP_REQUESTS_PER_MINUTE": str(args.quota)}
        fleet.start_worker(**quota_env)
        fleet.tick_round(fleet.connections[:10], quota_env)  # warm its pool children, within the bucket's burst
        fleet.clear_buckets()
        burst = fleet.tick_round(fleet.connections[: args.burst], quota_env)
        fleet.stop_worker()

        os.environ.update(env)
        from sync.tasks import tick_task  # the task's body, as the worker runs it; settings from `env`

        tick_times = {due: tick_alone(fleet.db, redis_server.url, due, tick_task, fleet.failures) for due in args.due}
        idle = idle_ticks(fleet.db, args.idle, tick_task, args.idle_repeats)

    report(args, commit.stdout.strip(), when, warm, rounds, burst, tick_times, idle)
    for failure in fleet.failures:
        print(f"FAILED: {failure}")
    return 1 if fleet.failures else 0


def report(
    args: argparse.Namespace,
    commit: str,
    when: str,
    warm: dict[str, Any],
    rounds: list[dict[str, Any]],
    burst: dict[str, Any],
    tick_times: dict[int, float],
    idle: list[float],
) -> None:
    def col(key: str, fmt: str = "{:.1f}") -> str:
        return spread([r[key] for r in rounds], fmt)

    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"bench_fleet · commit {commit} · {when} · {os.cpu_count()} cores · load average at the end {' '.join(load)}")
    print(
        f"no-op incremental Google Contacts runs: {args.connections} connections, one worker (default concurrency), "
        f"{args.rounds} round(s); median (min-max)"
    )
    print(f"  runs/s, tick start to last run ended:  {col('runs_per_s')}")
    print(f"  worker CPU per run (ms):               {col('cpu_ms', '{:.2f}')}")
    print(f"  commits per run (tick included):       {col('commits', '{:.2f}')}")
    print(f"  Redis commands per run, hub's:         {col('redis_hub', '{:.2f}')}")
    print(f"  Redis commands per run, Celery's:      {col('redis_celery', '{:.2f}')}")
    print(f"  INFO commandstats calls per run:       {col('commandstats', '{:.2f}')}")
    print(f"  provider calls per run:                {col('provider_calls', '{:.2f}')}")
    executed = [n for r in rounds for n in r["executions"]]
    print(f"  Celery executions per run:             median {statistics.median(executed):g}, max {max(executed)}")
    print(
        f"  (first, full syncs of 1 contact: {warm['runs']} runs, {warm['runs_per_s']:.1f} runs/s, "
        f"{warm['cpu_ms']:.2f} ms CPU and {warm['commits']:.2f} commits per run)"
    )
    bucket = Bucket.per_minute("app", args.quota)
    allowed = max(0.0, (args.burst - bucket.capacity) / bucket.rate)
    unthrottled = statistics.median(r["cpu_ms"] for r in rounds)
    ex, at = burst["executions"], burst["attempts"]
    print(f"throttled burst: {args.burst} no-op runs due at once under {args.quota}/min (bucket {bucket.capacity:g}+)")
    print(f"  took {burst['elapsed']:.1f} s; the quota allows {allowed:.1f} s: ratio {burst['elapsed'] / allowed:.2f}")
    print(
        f"  worker CPU per run {burst['cpu_ms']:.2f} ms ({burst['cpu_ms'] / unthrottled:.2f}x unthrottled); "
        f"commits per run {burst['commits']:.2f}; Redis per run hub {burst['redis_hub']:.2f} + Celery "
        f"{burst['redis_celery']:.2f}"
    )
    print(
        f"  Celery executions per run (task_prerun): median {statistics.median(ex):g}, p90 {percentile(ex, 0.9)}, "
        f"max {max(ex)}; run attempts: median {statistics.median(at):g}, p90 {percentile(at, 0.9)}, max {max(at)}; "
        f"provider 429s {burst['refused_429']}"
    )
    print("the tick alone (rows by SQL, no worker; the task's body in this process):")
    for due, seconds in tick_times.items():
        print(f"  {due:>6} due: {seconds:.3f} s ({1000 * seconds / due:.2f} ms per due run)")
    print(f"  idle over {args.idle:,} connections: {spread([1000 * s for s in idle])} ms, {len(idle)} ticks")
    print("not measured yet: no-op runs of Google Calendar, CalDAV (Radicale) and Lead Ads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--due", type=int, nargs="*", default=[300, 3000, 10_000])
    parser.add_argument("--idle", type=int, default=100_000)
    parser.add_argument("--idle-repeats", type=int, default=5)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--quota", type=int, default=600, help="the app's requests per minute during the burst")
    parser.add_argument("--small", action="store_true", help="a quick pass (CI keeps it from rotting)")
    args = parser.parse_args()
    if args.small:
        args.connections, args.rounds, args.due, args.idle, args.idle_repeats = 50, 1, [300, 1000], 10_000, 3
        args.burst, args.quota = 100, 1000  # a burst of 100 the quota (bucket 50) lets finish in 3 s
    sys.exit(run(args))


if __name__ == "__main__":
    main()
