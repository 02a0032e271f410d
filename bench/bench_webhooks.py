"""Facebook leadgen webhooks through one API process, on loopback: signed POSTs per second at saturation (one
change per POST, and batches of 50) beside a bare endpoint that only answers 200 (the same app, middleware and
uvicorn settings, in the same process); p50/p99 answer time at a steady 200 POSTs/s; the time from a POST to its
lead being visible through the API (p50/p95) at that rate; and the leads lost and doubled.

Prints figures and asserts no time; exits non-zero when a lead was lost or doubled. The load generator is an
async httpx client in a process of its own (Debian's wrk cannot sign each body). Needs PostgreSQL
(SYNCHUB_TEST_PG_ADMIN_URL, a role that may create databases) and Redis (SYNCHUB_TEST_REDIS_URL, default
redis://127.0.0.1:6379; database SYNCHUB_TEST_REDIS_DB, default 14, is used and flushed).

    python bench/bench_webhooks.py              # 5 s per phase, 3 repeats, medians and spread
    python bench/bench_webhooks.py --small      # one quick pass (CI keeps it from rotting)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import rawhttp  # noqa: E402  (standard library only)

if TYPE_CHECKING:
    from sandbox.admin_client import SandboxAdmin
# The hub's modules are imported where they are used: the load generator's process starts without them.

SLUG = "facebook_leads"
REDIS_DB = int(os.environ.get("SYNCHUB_TEST_REDIS_DB", "14"))
PERMISSIONS = ["leads_retrieval", "pages_show_list", "pages_manage_metadata", "pages_read_engagement"]
VERIFY_TOKEN = "bench-verify-token-0123456789"
STEADY_RATE = 200
SAMPLE_EVERY = 4  # every 4th steady lead has an email of its own, polled through the API for its visibility


# --- the load generator, in its own process -------------------------------------------------------------------


def body_of(page: str, leads: list[str]) -> bytes:
    changes = [
        {"field": "leadgen", "value": {"leadgen_id": lead, "page_id": page, "created_time": 1}} for lead in leads
    ]
    return json.dumps({"object": "page", "entry": [{"id": page, "time": 1, "changes": changes}]}).encode()


def signed(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


Bodies = list[tuple[bytes, dict[str, str]]]


def wire(url: str, bodies: Bodies) -> tuple[str, int, list[bytes]]:
    """The host, port and each POST as bytes, built before the clock starts."""
    host, port = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
    path = "/" + url.removeprefix("http://").split("/", 1)[1]
    return host, int(port), [rawhttp.request(host, int(port), path, body, headers) for body, headers in bodies]


async def saturate(url: str, bodies: Bodies, seconds: float, clients: int) -> dict[str, Any]:
    """POST as fast as `clients` connections allow for `seconds` (bodies taken in order, never twice)."""
    host, port, requests = wire(url, bodies)
    started = time.perf_counter()
    statuses: dict[int, int] = {}

    def count(_: int, status: int) -> None:
        statuses[status] = statuses.get(status, 0) + 1

    await rawhttp.post_each(host, port, requests, clients, deadline=started + seconds, on_answer=count)
    elapsed = time.perf_counter() - started
    return {"posts": sum(statuses.values()), "seconds": elapsed, "statuses": statuses}


async def steady(url: str, bodies: Bodies, rate: float) -> dict[str, Any]:
    """Open loop: POST i leaves at start + i/rate whatever the answers, on an idle keep-alive connection or a new
    one; each answer's time, each send's wall time."""
    host, port, requests = wire(url, bodies)
    latencies: list[float] = [0.0] * len(bodies)
    sent_at: list[float] = [0.0] * len(bodies)
    statuses: dict[int, int] = {}
    idle: list[rawhttp.Connection] = []
    start = time.perf_counter() + 0.05

    async def one(index: int) -> None:
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        connection = idle.pop() if idle else rawhttp.Connection(host, port)
        sent_at[index] = time.time()
        began = time.perf_counter()
        try:
            status = await connection.exchange(requests[index])
        except (OSError, asyncio.IncompleteReadError):
            connection.close()
            status = 0
        latencies[index] = time.perf_counter() - began
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(connection)

    await asyncio.gather(*(one(i) for i in range(len(bodies))))
    for connection in idle:
        connection.close()
    return {"latencies": latencies, "sent_at": sent_at, "statuses": statuses}


def loadgen(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    batches: list[list[str]] = spec["batches"]
    bodies = [(body, signed(spec["secret"], body)) for body in (body_of(spec["page"], b) for b in batches)]
    if spec["mode"] == "saturate":
        result = asyncio.run(saturate(spec["url"], bodies, spec["seconds"], spec["clients"]))
    else:
        result = asyncio.run(steady(spec["url"], bodies, spec["rate"]))
    print(json.dumps(result))


def run_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(spec, file)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--loadgen", file.name], capture_output=True, text=True, check=True
        )
    finally:
        os.unlink(file.name)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- the API process: the hub's app with a bare endpoint beside the receiver -----------------------------------


def serve(port: int) -> None:
    """The hub's app as `synchub api` builds and serves it, plus `POST /bench/bare`, which only answers 200."""
    import uvicorn
    from fastapi.responses import Response

    from core.settings import load_settings
    from hub.app import create_app

    settings = load_settings()
    app = create_app(settings)

    @app.post("/bench/bare", include_in_schema=False)
    async def bare() -> Response:
        return Response(status_code=200)

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,
    )


# --- the run ---------------------------------------------------------------------------------------------------


@dataclass
class Hub:
    env: dict[str, str]
    url: str
    secret: str
    page: str
    form: str
    token: str
    api_pid: int = 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")} | env
    return subprocess.Popen(argv, env=full, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def hub_env(db_url: str, redis_url: str, sandbox: str, port: int, app_id: str, secret: str) -> dict[str, str]:
    return {
        "SYNCHUB_DATABASE_URL": db_url,
        "SYNCHUB_REDIS_URL": redis_url,
        "SYNCHUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SYNCHUB_VAULT__KEYS": f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        "SYNCHUB_VAULT__ACTIVE_KEY_ID": "1",
        "SYNCHUB_IDENTITY__JWT_SECRET": secrets.token_urlsafe(48),
        "SYNCHUB_CONNECTORS": SLUG,
        "SYNCHUB_FACEBOOK__CLIENT_ID": app_id,
        "SYNCHUB_FACEBOOK__CLIENT_SECRET": secret,
        "SYNCHUB_FACEBOOK__BASE_URL": sandbox,
        "SYNCHUB_FACEBOOK_LEADS__VERIFY_TOKEN": VERIFY_TOKEN,
        "SYNCHUB_FACEBOOK_LEADS__APP_REQUESTS_PER_MINUTE": "1000000",
        "SYNCHUB_FACEBOOK_LEADS__CONNECTION_REQUESTS_PER_MINUTE": "1000000",
        "SYNCHUB_FACEBOOK_LEADS__RESOURCE_REQUESTS_PER_MINUTE": "1000000",
        "SYNCHUB_LOG_LEVEL": "WARNING",
    }


def connect(env: dict[str, str], admin: SandboxAdmin, app_id: str) -> tuple[str, str]:
    """A Facebook user with one Page and form, and a hub connection that chose the Page (as the hub stores one)."""
    from core.db import make_engine, session_factory, transaction
    from core.models import Connection, Sharing, utcnow
    from core.settings import load_settings
    from sync.models import ConnectionResource
    from token_vault.vault import Vault, key_ring

    user = admin.facebook.add_user(f"Bench {secrets.token_hex(3)}")
    page = admin.facebook.add_page(user["id"], "Bench Page")
    form = admin.facebook.add_form(page, "Bench form")
    tokens = admin.facebook.mint_token(user["id"], app_id, PERMISSIONS, pages=[page])
    os.environ.update(env)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    vault = Vault(key_ring(settings.vault))
    with transaction(session_factory(engine)) as session:
        connection = Connection(
            workspace_id="bench",
            user_id="bench",
            auth_provider="facebook",
            provider_account_id=user["id"],
            granted_scopes=PERMISSIONS,
            capabilities=["leads"],
            sharing=Sharing.WORKSPACE.value,
        )
        session.add(connection)
        session.flush()
        vault.store(session, connection, "access_token", tokens["access_token"], utcnow() + timedelta(days=50))
        session.add(
            ConnectionResource(
                connection_id=connection.id, capability="leads", external_id=page, display_name="Bench", selected=True
            )
        )
    engine.dispose()
    return page, form


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the API did not come up")


def fake_ids(count: int, size: int) -> list[list[str]]:
    base = 10**15 + secrets.randbelow(10**14) * 1000
    return [[str(base + i * size + j) for j in range(size)] for i in range(count)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(group: int) -> float:
    """User + system CPU of every live process in a process group (a worker and its pool's children)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def saturation(hub: Hub, path: str, size: int, seconds: float) -> tuple[float, float]:
    """POSTs/s through the receiver (or the bare endpoint) for changes on a Page no connection chose, and the API
    process's CPU milliseconds per POST."""
    before = cpu_seconds(hub.api_pid)
    estimate = int(seconds * 3000 / size) + 100
    result = run_loadgen(
        {
            "mode": "saturate",
            "url": f"{hub.url}{path}",
            "secret": hub.secret,
            "page": "99" + hub.page,
            "batches": fake_ids(estimate, size),
            "seconds": seconds,
            "clients": 32,
        }
    )
    used = cpu_seconds(hub.api_pid) - before
    bad = {code: n for code, n in result["statuses"].items() if code != "200"}
    if bad:
        raise RuntimeError(f"saturation answers other than 200: {bad}")
    return float(result["posts"] / result["seconds"]), 1000 * used / result["posts"]


class Watch:
    """Polls the leads API, while the load runs and after, for each sampled email whose POST is due (by the
    schedule), the oldest few unseen ones at a time (leads land about in order; one seen late in the window is
    counted late, never early), and notes when each lead first shows."""

    WINDOW = 4
    PAUSE = 0.05

    def __init__(self, hub: Hub, emails: dict[int, str]) -> None:
        self.hub, self.emails = hub, emails
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.started = time.time()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < len(self.emails) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self) -> None:
        headers = {"authorization": f"Bearer {self.hub.token}"}
        order = sorted(self.emails)
        with httpx.Client(base_url=self.hub.url, headers=headers, timeout=30) as client:
            while not self.stop.is_set() and len(self.seen) < len(self.emails):
                now = time.time()
                due = [
                    self.emails[i]
                    for i in order
                    if self.emails[i] not in self.seen and self.started + i / STEADY_RATE <= now
                ][: self.WINDOW]
                for email in due:
                    answer = client.get("/api/v1/leads", params={"email": email})
                    if answer.status_code == 200 and answer.json()["leads"]:
                        self.seen[email] = time.time()
                time.sleep(self.PAUSE)  # the watch's reads share the API's CPU with the POSTs they time


def lead_counts(env: dict[str, str], ids: list[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    from core.db import make_engine, session_factory
    from crm.models import LeadRow

    engine = make_engine(env["SYNCHUB_DATABASE_URL"])
    with session_factory(engine)() as session:
        rows = session.execute(
            select(LeadRow.external_id, func.count()).where(LeadRow.external_id.in_(ids)).group_by(LeadRow.external_id)
        ).all()
    engine.dispose()
    return {key: count for key, count in rows}


def set_aside(env: dict[str, str]) -> None:
    """Mark the saturation's deliveries (changes of a Page nobody chose) ignored, as a worker would have."""
    from sqlalchemy import update

    from core.db import make_engine, session_factory, transaction
    from webhooks.models import WebhookDelivery

    engine = make_engine(env["SYNCHUB_DATABASE_URL"])
    with transaction(session_factory(engine)) as session:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.status == "pending").values(status="ignored"))
    engine.dispose()


def settled(env: dict[str, str], keys: list[str], timeout: float) -> None:
    from sqlalchemy import func, select

    from core.db import make_engine, session_factory
    from webhooks.models import WebhookDelivery

    engine = make_engine(env["SYNCHUB_DATABASE_URL"])
    deadline = time.monotonic() + timeout
    model = WebhookDelivery
    with session_factory(engine)() as session:
        while time.monotonic() < deadline:
            open_ = session.scalar(select(func.count()).where(model.dedupe_key.in_(keys), model.status == "pending"))
            stored = session.scalar(select(func.count()).where(model.dedupe_key.in_(keys)))
            session.rollback()
            if stored == len(keys) and not open_:
                break
            time.sleep(0.1)
        statuses = session.execute(
            select(model.status, func.count(), func.min(model.error))
            .where(model.dedupe_key.in_(keys))
            .group_by(model.status)
        ).all()
    engine.dispose()
    if any(status != "processed" for status, _, _ in statuses):
        print(f"steady deliveries by status (and an error): {[tuple(row) for row in statuses]}", file=sys.stderr)


def warm_up(hub: Hub, admin: SandboxAdmin, count: int = 200) -> None:
    """A second of leads at the steady rate, landed before the measured phase: each pool process then has its
    imports, database and Graph connections and compiled statements, as a worker in service has."""
    ids = admin.facebook.add_leads(hub.form, count, webhook=False)["leads"]
    spec = {"mode": "steady", "url": f"{hub.url}/webhooks/{SLUG}", "secret": hub.secret, "page": hub.page}
    run_loadgen({**spec, "batches": [[lead] for lead in ids], "rate": STEADY_RATE})
    settled(hub.env, [f"{hub.page}:{lead}" for lead in ids], timeout=60)


def steady_phase(hub: Hub, admin: SandboxAdmin, seconds: float, worker: int) -> dict[str, Any]:
    count = int(STEADY_RATE * seconds)
    emails: dict[int, str] = {}
    ids: list[str] = []
    chunk = SAMPLE_EVERY - 1
    while len(ids) < count:  # leads with no email of their own in bulk, every SAMPLE_EVERY-th with one
        ids += admin.facebook.add_leads(hub.form, min(chunk, count - len(ids)), webhook=False)["leads"]
        if len(ids) < count:
            email = f"b{uuid.uuid4().hex[:12]}@bench.test"
            field_data = [{"name": "email", "values": [email]}, {"name": "full_name", "values": ["Bench"]}]
            ids += admin.facebook.add_leads(hub.form, 1, webhook=False, field_data=field_data)["leads"]
            emails[len(ids) - 1] = email
    worker_before = group_cpu_seconds(worker)
    with Watch(hub, emails) as watch:
        result = run_loadgen(
            {
                "mode": "steady",
                "url": f"{hub.url}/webhooks/{SLUG}",
                "secret": hub.secret,
                "page": hub.page,
                "batches": [[lead] for lead in ids],
                "rate": STEADY_RATE,
            }
        )
        watch.wait(timeout=30)
    sent = {emails[i]: result["sent_at"][i] for i in emails}
    seen = {email: watch.seen[email] - sent[email] for email in sent if email in watch.seen}
    settled(hub.env, [f"{hub.page}:{lead}" for lead in ids], timeout=60)
    worker_cpu = group_cpu_seconds(worker) - worker_before  # polling the API for visibility is in neither
    counts = lead_counts(hub.env, ids)
    latencies = sorted(result["latencies"])
    delays = sorted(seen.values())
    return {
        "worker_cpu_ms_per_lead": 1000 * worker_cpu / count,
        "answer_p50_ms": 1000 * quantile(latencies, 0.5),
        "answer_p99_ms": 1000 * quantile(latencies, 0.99),
        "visible_p50_s": quantile(delays, 0.5) if delays else float("nan"),
        "visible_p95_s": quantile(delays, 0.95) if delays else float("nan"),
        "sampled": len(sent),
        "unseen": len(sent) - len(seen),
        "lost": sum(1 for lead in ids if counts.get(lead, 0) == 0),
        "doubled": sum(max(0, counts.get(lead, 0) - 1) for lead in ids),
        "non_200": sum(n for code, n in result["statuses"].items() if code != "200"),
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import redis

    from core.identity import issue_token
    from core.settings import normalise_database_url
    from hub.database import scratch_database
    from sandbox.admin_client import SandboxAdmin
    from sandbox.process import running_sandbox

    base = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    redis_url = f"{base}/{REDIS_DB}"
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    admin_url = normalise_database_url(os.environ["SYNCHUB_TEST_PG_ADMIN_URL"])
    rows: list[dict[str, Any]] = []
    with (
        running_sandbox(seed=5) as sandbox,
        SandboxAdmin(sandbox, timeout=600) as admin,
        scratch_database(admin_url, "synchub_bench") as db_url,
    ):
        port = free_port()
        app_id, secret = str(10**15 + secrets.randbelow(10**14)), secrets.token_urlsafe(24)
        admin.facebook.register_app(app_id, secret, [f"http://127.0.0.1:{port}/oauth/facebook/callback"])
        env = hub_env(db_url, redis_url, sandbox, port, app_id, secret)
        page, form = connect(env, admin, app_id)
        token = issue_token(env["SYNCHUB_IDENTITY__JWT_SECRET"], "bench", "bench", 3600)
        hub = Hub(env, f"http://127.0.0.1:{port}", secret, page, form, token)
        api = spawn([sys.executable, __file__, "--serve", str(port)], env)
        hub.api_pid = api.pid
        worker_argv = [sys.executable, "-m", "hub", "worker", "--queues", "webhooks"]
        worker_argv += ["--concurrency", str(args.workers)]
        try:
            wait_up(hub.url)
            # --small: the worker boots while the saturation runs (whose figures then share the CPU with it, and
            # whose few hundred changes it records as ignored), not after it: its start is most of a quick pass.
            early = spawn(worker_argv, env) if args.small else None
            for _ in range(args.repeats):
                row: dict[str, Any] = {}
                row["single_posts_s"], row["single_cpu_ms"] = saturation(hub, f"/webhooks/{SLUG}", 1, args.seconds)
                row["bare_posts_s"], row["bare_cpu_ms"] = saturation(hub, "/bench/bare", 1, args.seconds)
                row["batch50_posts_s"], row["batch50_cpu_ms"] = saturation(hub, f"/webhooks/{SLUG}", 50, args.seconds)
                row["ratio_to_bare"] = row["single_posts_s"] / row["bare_posts_s"]
                # The saturation's tasks (changes of a Page nobody chose) are not processed. Only the queue's list
                # goes: a FLUSHDB would drop kombu's exchange bindings, and the API's later sends with them.
                broker.delete("webhooks")
                set_aside(env)  # nor are their deliveries: a worker claims what is pending beside its task's
                worker = early or spawn(worker_argv, env)  # after the saturation: it would process those changes
                try:
                    time.sleep(args.worker_start)
                    if not args.small:
                        warm_up(hub, admin)
                    row.update(steady_phase(hub, admin, args.steady_seconds or args.seconds, worker.pid))
                finally:
                    stop(worker)
                rows.append(row)
                print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        finally:
            stop(api)
    broker.flushdb()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="one quick pass: 0.5 s per phase, worker started at once")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--steady-seconds", type=float, default=None, help="length of the steady phase")
    parser.add_argument(
        "--workers", type=int, default=2, help="worker concurrency during the steady phase (synchub worker's default)"
    )
    parser.add_argument("--worker-start", type=float, default=3.0, help="seconds the worker is given to start")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.loadgen:
        loadgen(args.loadgen)
        return
    if args.small:
        args.repeats, args.seconds, args.steady_seconds, args.worker_start = 1, 0.5, 0.5, 0.0
    rows = run(args)
    print()
    for key in rows[0]:
        values = [row[key] for row in rows]
        if isinstance(values[0], float):
            spread = f" (min {min(values):.3f}, max {max(values):.3f})" if len(values) > 1 else ""
            print(f"{key}: median {statistics.median(values):.3f}{spread}")
        else:
            print(f"{key}: {values}")
    lost, doubled = sum(r["lost"] for r in rows), sum(r["doubled"] for r in rows)
    if lost or doubled:
        sys.exit(f"leads lost: {lost}, doubled: {doubled}")


if __name__ == "__main__":
    main()
