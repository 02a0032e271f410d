"""Google Contacts sync throughput: plain httpx vs the connector's read path vs the whole sync vs a write floor,
then (e) a second full pass over the unchanged data, which must write no crm_* row.

Prints figures and asserts no time; exits non-zero when (e) wrote a crm_* row, as PostgreSQL's own statistics
count them. Needs PostgreSQL (SYNCHUB_TEST_PG_ADMIN_URL, a role that may create databases) and Redis
(SYNCHUB_TEST_REDIS_URL, default redis://127.0.0.1:6379; database SYNCHUB_TEST_REDIS_DB, default 14, is used and
flushed).

    python bench/bench_contacts.py                 # N = 10,000 and 100,000
    python bench/bench_contacts.py --sizes 20000   # other sizes
    python bench/bench_contacts.py --small         # one quick pass (CI keeps it from rotting)
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import redis
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.base import StreamContext  # noqa: E402
from connectors.google_contacts.stream import PERSON_FIELDS, GoogleContactsStream  # noqa: E402
from core.db import make_engine, session_factory, transaction  # noqa: E402
from core.errors import SecretMissing  # noqa: E402
from core.models import utcnow  # noqa: E402
from core.settings import load_settings, normalise_database_url  # noqa: E402
from crm.contacts import _content, addresses, encode_json  # noqa: E402
from crm.models import ContactRow  # noqa: E402
from crm.records import Contact  # noqa: E402
from hub.database import scratch_database  # noqa: E402
from sandbox.admin_client import SandboxAdmin  # noqa: E402
from sandbox.process import running_sandbox  # noqa: E402
from sync.celery_app import make_celery  # noqa: E402
from sync.models import SyncRun  # noqa: E402
from sync.runtime import Runtime  # noqa: E402
from sync.wiring import build_engine  # noqa: E402
from tests.google.sealed import CONTACTS_READONLY, sealed_contacts_connection  # noqa: E402
from token_vault.vault import Vault, key_ring  # noqa: E402

SCOPE = CONTACTS_READONLY
PAGE = 1000
REDIS_DB = int(os.environ.get("SYNCHUB_TEST_REDIS_DB", "14"))


@dataclass(frozen=True)
class StaticCredentials:
    token: str

    def access_token(self) -> str:
        return self.token

    def rejected(self, token: str) -> str:
        raise RuntimeError("the sandbox refused a fresh token")

    def secret(self, name: str) -> str:
        raise SecretMissing(name)

    def keep(self, name: str, value: str) -> None:
        raise RuntimeError("the benchmark keeps no secrets")


def database() -> AbstractContextManager[str]:
    return scratch_database(normalise_database_url(os.environ["SYNCHUB_TEST_PG_ADMIN_URL"]), "synchub_bench")


def hub_env(db_url: str, redis_url: str, sandbox: str, client_id: str, client_secret: str) -> dict[str, str]:
    return {
        "SYNCHUB_DATABASE_URL": db_url,
        "SYNCHUB_REDIS_URL": redis_url,
        "SYNCHUB_PUBLIC_URL": "http://127.0.0.1:9",
        "SYNCHUB_VAULT__KEYS": f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        "SYNCHUB_VAULT__ACTIVE_KEY_ID": "1",
        "SYNCHUB_IDENTITY__JWT_SECRET": secrets.token_urlsafe(48),
        "SYNCHUB_CONNECTORS": "google_contacts",
        "SYNCHUB_GOOGLE__CLIENT_ID": client_id,
        "SYNCHUB_GOOGLE__CLIENT_SECRET": client_secret,
        "SYNCHUB_GOOGLE__BASE_URL": sandbox,
        "SYNCHUB_LOG_LEVEL": "WARNING",
        "SYNCHUB_CELERY__SYNC_TIME_BUDGET": "60",
        "SYNCHUB_GOOGLE_CONTACTS__APP_REQUESTS_PER_MINUTE": "1000000",
        "SYNCHUB_GOOGLE_CONTACTS__CONNECTION_REQUESTS_PER_MINUTE": "1000000",
    }


class PageOnly(msgspec.Struct):
    """Only what walking the pages needs: each person is left as raw bytes, nothing of it is built."""

    connections: list[msgspec.Raw] = []
    nextPageToken: str | None = None


PAGE_ONLY = msgspec.json.Decoder(PageOnly)


def plain_httpx(sandbox: str, token: str, minimal: bool = False) -> tuple[float, int]:
    """(a): httpx paging through the listing, decoding with `.json()`; `minimal` reads only the page token and
    the people's count (msgspec, nothing built), the least work that walks the pages."""
    started, items = time.perf_counter(), 0
    params: dict[str, Any] = {"personFields": PERSON_FIELDS, "pageSize": PAGE, "requestSyncToken": "true"}
    with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=60) as client:
        while True:
            response = client.get(f"{sandbox}/v1/people/me/connections", params=params)
            if minimal:
                page = PAGE_ONLY.decode(response.content)
                items, next_token = items + len(page.connections), page.nextPageToken
            else:
                body = response.json()
                items, next_token = items + len(body.get("connections", [])), body.get("nextPageToken")
            if next_token is None:
                return time.perf_counter() - started, items
            params["pageToken"] = next_token


def connector_read(sandbox: str, token: str, keep: bool = False) -> tuple[float, int, list[list[dict[str, Any]]]]:
    """(b): the connector's read path. Timed runs keep nothing, as a sync keeps nothing past its page (holding
    100k records would time the garbage collector walking them); `keep` collects the pages for the floor."""
    context = StreamContext("bench", StaticCredentials(token), sandbox, {"page_size": PAGE})
    started, items, records = time.perf_counter(), 0, []
    for page in GoogleContactsStream(context).read(None):
        items += len(page.records)
        if keep:
            records.append(page.records)
    elapsed = time.perf_counter() - started
    return elapsed, items, [[_floor_row(r) for r in page] for page in records]


def _floor_row(contact: Contact) -> dict[str, Any]:
    return {"external_id": contact.external_id, **_content(contact), "addresses": sorted(addresses(contact))}


JSON_FLOOR = """
INSERT INTO crm_contacts (id, workspace_id, connection_id, provider, external_id, display_name, given_name,
    family_name, emails, phones, organization, job_title, primary_email, created_at, updated_at)
SELECT gen_random_uuid(), 'bench', %s, 'google', p.external_id, p.display_name, p.given_name, p.family_name,
    p.emails, p.phones, p.organization, p.job_title, p.primary_email, now(), now()
FROM json_to_recordset(%s::json) AS p(external_id text, display_name text, given_name text, family_name text,
    emails json, phones json, organization text, job_title text, primary_email text)
ON CONFLICT (connection_id, resource, external_id) DO UPDATE SET display_name = excluded.display_name,
    emails = excluded.emails, phones = excluded.phones, updated_at = excluded.updated_at
"""


JSON_FLOOR_INDEXED = """
WITH page AS (
  SELECT * FROM json_to_recordset(%(page)s::json) AS p(external_id text, display_name text, given_name text,
    family_name text, emails json, phones json, organization text, job_title text, primary_email text,
    addresses json)
), added AS (
  INSERT INTO crm_contacts (id, workspace_id, connection_id, provider, external_id, display_name, given_name,
      family_name, emails, phones, organization, job_title, primary_email, created_at, updated_at)
  SELECT gen_random_uuid(), 'bench', %(connection)s, 'google', p.external_id, p.display_name, p.given_name,
      p.family_name, p.emails, p.phones, p.organization, p.job_title, p.primary_email, now(), now()
  FROM page p
  ON CONFLICT (connection_id, resource, external_id) DO UPDATE SET display_name = excluded.display_name,
      emails = excluded.emails, phones = excluded.phones, updated_at = excluded.updated_at
  RETURNING id, external_id
)
INSERT INTO crm_contact_emails (contact_id, email, workspace_id)
SELECT added.id, address, 'bench' FROM added JOIN page p USING (external_id),
  json_array_elements_text(p.addresses) AS address
ON CONFLICT DO NOTHING
"""


def write_floor_json(
    db_url: str, connection_id: uuid.UUID, pages: list[list[dict[str, Any]]], indexed: bool = False
) -> float:
    """The same rows upserted with one statement per page that takes the whole page as one JSON document and lets
    PostgreSQL unpack it (`json_to_recordset`), the fastest single statement we know. `indexed` also writes the
    email index, as the sync does: the same data into the same tables."""
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    started = time.perf_counter()
    with psycopg.connect(url) as connection:
        for page in pages:
            document = encode_json(page).decode()
            if indexed:
                connection.execute(JSON_FLOOR_INDEXED, {"page": document, "connection": connection_id})
            else:
                connection.execute(JSON_FLOOR, (connection_id, document))
            connection.commit()
    return time.perf_counter() - started


def write_floor(db_url: str, connection_id: uuid.UUID, pages: list[list[dict[str, Any]]]) -> float:
    """The same rows upserted with one INSERT ... ON CONFLICT per page through plain psycopg."""
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    columns = [c.name for c in ContactRow.__table__.columns if c.name not in ("full_pass_id", "resource")]
    sql = (
        f"INSERT INTO crm_contacts ({', '.join(columns)}) SELECT * FROM unnest("
        + ", ".join(
            f"%s::{t}[]"
            for t in (
                "uuid",
                "text",
                "uuid",
                "text",
                "text",
                "text",
                "text",
                "text",
                "json",
                "json",
                "text",
                "text",
                "text",
                "timestamptz",
                "timestamptz",
            )
        )
        + ") ON CONFLICT (connection_id, resource, external_id) DO UPDATE SET display_name = excluded.display_name, "
        "emails = excluded.emails, phones = excluded.phones, updated_at = excluded.updated_at"
    )
    started = time.perf_counter()
    with psycopg.connect(url) as connection:
        now = utcnow()
        for page in pages:
            rows = [
                [
                    uuid.uuid4(),
                    "bench",
                    connection_id,
                    "google",
                    r["external_id"],
                    r["display_name"],
                    r["given_name"],
                    r["family_name"],
                    encode_json(r["emails"]).decode(),
                    encode_json(r["phones"]).decode(),
                    r["organization"],
                    r["job_title"],
                    r["primary_email"],
                    now,
                    now,
                ]
                for r in page
            ]
            # Binary parameters: psycopg's text format quotes every array element in Python, which would make
            # the floor slower than the sink's COPY and flatter (c)/(d).
            connection.execute(sql, [list(column) for column in zip(*rows, strict=True)], binary=True)
            connection.commit()
    return time.perf_counter() - started


def settle(db_url: str) -> None:
    """Vacuum and analyse the CRM tables before a timed write, so autovacuum catching up on the previous phase's
    rows does not run during this one (it otherwise landed on whichever phase came next)."""
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) crm_contacts, crm_contact_emails")


def quiet(db_url: str) -> None:
    """Wait until no other client is connected: a backend flushes its table statistics when it exits."""
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    query = (
        "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
        "and backend_type = 'client backend'"
    )
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as connection:
        while (row := connection.execute(query).fetchone()) and row[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("other clients are still connected to the benchmark's database")
            time.sleep(0.05)


def tuples_written(db_url: str) -> dict[str, int]:
    """Inserted + updated + deleted tuples of each table, from pg_stat_user_tables once every client has left."""
    quiet(db_url)
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("select pg_stat_clear_snapshot()")
        rows = connection.execute("select relname, n_tup_ins + n_tup_upd + n_tup_del from pg_stat_user_tables")
        return {name: int(count) for name, count in rows}


def unchanged_full_pass(
    env: dict[str, str], admin: SandboxAdmin, account: str, connection_id: uuid.UUID
) -> dict[str, Any]:
    """(e): the connection syncs again after its sync token expired: a full pass over data it already holds."""
    admin.expire_sync_tokens(account)
    before = tuples_written(env["SYNCHUB_DATABASE_URL"])
    elapsed, _, counts = whole_sync(env, connection_id)
    after = tuples_written(env["SYNCHUB_DATABASE_URL"])
    written = {name: count - before.get(name, 0) for name, count in after.items()}
    return {
        "e_full_pass_s": elapsed,
        "e_status_ok": counts["status_ok"],
        "e_updated": counts["updated"],
        "e_deleted": counts["deleted"],
        "e_crm_rows_written": sum(count for name, count in written.items() if name.startswith("crm_")),
        "e_seen_rows_written": written.get("full_pass_seen", 0),
    }


def make_connection(env: dict[str, str], admin: SandboxAdmin, account: str, client_id: str, user: str) -> uuid.UUID:
    os.environ.update(env)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    tokens = admin.mint_tokens(account, client_id, [SCOPE])
    vault = Vault(key_ring(settings.vault))
    with transaction(session_factory(engine)) as session:
        connection = sealed_contacts_connection(session, vault, tokens, workspace="bench", user=user, account=account)
        connection_id = connection.id
    engine.dispose()
    return connection_id


def pool_child(worker: subprocess.Popen[bytes]) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == worker.pid:
                return int(entry.name)
    raise RuntimeError("no pool child")


def cpu_by_role(worker_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the worker's process group, every PostgreSQL process and the sandbox."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"worker": 0.0, "postgres": 0.0, "sandbox": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(fields[2]) == worker_pid:
            used["worker"] += seconds
        elif stat.split("(", 1)[1].startswith("postgres"):
            used["postgres"] += seconds
        elif b"sandbox" in argv and b"--seed" in argv:
            used["sandbox"] += seconds
    return used


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def whole_sync(env: dict[str, str], connection_id: uuid.UUID) -> tuple[float, float, dict[str, float]]:
    os.environ.update(env)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    rt = Runtime(settings, engine, session_factory(engine), redis.Redis.from_url(settings.redis_url))
    worker = subprocess.Popen(
        [sys.executable, "-m", "hub", "worker", "--queues", "sync", "--concurrency", "1"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        celery = make_celery(settings)
        assert celery.send_task("synchub.maintenance.ping", queue="sync").get(timeout=60)
        child = pool_child(worker)
        run_id = build_engine(rt).request(connection_id, "contacts", "bench")
        cpu_before = cpu_by_role(worker.pid)
        started = time.perf_counter()
        celery.send_task("synchub.sync.run", args=[str(run_id)], queue="sync")
        while True:
            with rt.sessions() as session:
                run = session.get_one(SyncRun, run_id)
                if run.status in ("succeeded", "failed"):
                    break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = {role: used - cpu_before[role] for role, used in cpu_by_role(worker.pid).items()}
        counts = {
            "status_ok": int(run.status == "succeeded"),
            "created": run.records_created,
            "updated": run.records_updated,
            "deleted": run.records_deleted,
            "calls": run.api_calls,
            **{f"c_cpu_{role}_s": round(seconds, 2) for role, seconds in cpu.items()},
        }
        return elapsed, peak_rss_mb(child), counts
    finally:
        os.killpg(worker.pid, 15)
        worker.wait()
        engine.dispose()


def people_calls(admin: SandboxAdmin, account: str, after: int) -> int:
    return sum(1 for e in admin.request_log(after) if e["path"].startswith("/v1/people") and e["account"] == account)


def measure(size: int, sandbox: str, admin: SandboxAdmin, redis_url: str, repeats: int) -> dict[str, Any]:
    client_id, client_secret = f"bench-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16)
    admin.register_client(client_id, client_secret, ["http://127.0.0.1:9/oauth/google/callback"])
    account = f"bench-{size}-{uuid.uuid4().hex[:6]}@sandbox.test"
    seeded = time.perf_counter()
    admin.seed_account(account, contacts=size)
    seed_seconds = time.perf_counter() - seeded
    token = admin.mint_tokens(account, client_id, [SCOPE])["access_token"]
    a_times, a_min_times, b_times = [], [], []
    for _ in range(repeats):
        a_times.append(plain_httpx(sandbox, token)[0])
        elapsed, items = plain_httpx(sandbox, token, minimal=True)
        assert items == size
        a_min_times.append(elapsed)
        elapsed, items, _ = connector_read(sandbox, token)
        assert items == size
        b_times.append(elapsed)
    pages = connector_read(sandbox, token, keep=True)[2]
    with database() as db_url:
        env = hub_env(db_url, redis_url, sandbox, client_id, client_secret)
        floor_connection = make_connection(env, admin, account, client_id, "floor")
        settle(db_url)
        d_unnest = write_floor(db_url, floor_connection, pages)
        json_connection = make_connection(env, admin, account, client_id, "floor-json")
        settle(db_url)
        d_contacts = write_floor_json(db_url, json_connection, pages)
        # (c) and the floor it is judged against alternate, each on a fresh connection, so drift on the machine
        # and the tables' growth touch both alike; medians are reported.
        c_times, d_times, rss_peaks, calls_seen = [], [], [], set()
        for run in range(repeats):
            indexed_connection = make_connection(env, admin, account, client_id, f"floor-indexed-{run}")
            settle(db_url)
            d_times.append(write_floor_json(db_url, indexed_connection, pages, indexed=True))
            connection_id = make_connection(env, admin, account, client_id, f"sync-{run}")
            settle(db_url)
            mark = (admin.request_log() or [{"id": 0}])[-1]["id"]
            c_run, rss_run, counts = whole_sync(env, connection_id)
            c_times.append(c_run)
            rss_peaks.append(rss_run)
            calls_seen.add(people_calls(admin, account, mark))
        again = unchanged_full_pass(env, admin, account, connection_id)
    c_time, d_time, rss = statistics.median(c_times), statistics.median(d_times), max(rss_peaks)
    calls: int | str = calls_seen.pop() if len(calls_seen) == 1 else "/".join(map(str, sorted(calls_seen)))
    a, a_min, b = statistics.median(a_times), statistics.median(a_min_times), statistics.median(b_times)
    return {
        "N": size,
        "seed_s": seed_seconds,
        "a_httpx_s": a,
        "a_min_s": a_min,
        "b_read_s": b,
        "c_sync_s": c_time,
        "d_floor_s": d_time,
        "d_contacts_only_s": d_contacts,
        "d_unnest_s": d_unnest,
        "b_vs_a": a / b,
        "b_vs_a_min": a_min / b,
        "c_vs_d": d_time / c_time,
        "c_vs_d_each_run": " ".join(f"{d / c:.2f}" for d, c in zip(d_times, c_times, strict=True)),
        "c_vs_d_median_of_runs": statistics.median(d / c for d, c in zip(d_times, c_times, strict=True)),
        "c_vs_d_contacts_only": d_contacts / c_time,
        "c_vs_d_unnest": d_unnest / c_time,
        "c_vs_a_plus_d": (a + d_time) / c_time,
        "people_calls": calls,
        "expected_calls": math.ceil(size / PAGE),
        "worker_peak_rss_mb": rss,
        **counts,
        **again,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3, help="runs of (a), (b), (c) and (d) per size; medians")
    parser.add_argument("--small", action="store_true", help="one quick pass at N=1500")
    args = parser.parse_args()
    sizes, repeats = ([1500], 1) if args.small else (args.sizes, args.repeats)
    base = os.environ.get("SYNCHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    redis_url = f"{base}/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    results = []
    with running_sandbox(seed=5) as sandbox, SandboxAdmin(sandbox, timeout=600) as admin:
        for size in sizes:
            results.append(measure(size, sandbox, admin, redis_url, repeats))
    redis.Redis.from_url(redis_url).flushdb()
    keys = list(results[0])
    print(" | ".join(keys))
    for row in results:
        print(" | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys))
    if len(results) > 1:
        print(
            f"worker peak RSS growth from N={results[0]['N']} to N={results[-1]['N']}: "
            f"{results[-1]['worker_peak_rss_mb'] - results[0]['worker_peak_rss_mb']:.1f} MB"
        )
    rewritten = [row["N"] for row in results if row["e_crm_rows_written"] or not row["e_status_ok"]]
    if rewritten:
        sys.exit(f"(e) a full pass over unchanged data wrote crm_* rows or failed at N = {rewritten}")


if __name__ == "__main__":
    main()
