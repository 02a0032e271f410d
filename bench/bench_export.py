"""A user's export of 100,000 contacts streamed through HTTP from a real `synchub api` process: the API process's
resident memory (sampled from /proc while the export streams) before and at its peak, the bytes and records per
second, and the cost the tombstone trigger adds to a bulk delete of the same rows.

Prints figures and asserts no time; exits non-zero when the export's record count is off. The contacts are seeded
with one INSERT ... SELECT. Needs PostgreSQL (SYNCHUB_TEST_PG_ADMIN_URL, a role that may create databases) and
Debian's redis-server (as the tests do).

    python bench/bench_export.py              # 100,000 contacts, 3 repeats, medians and spread
    python bench/bench_export.py --small      # 10,000 contacts, once (CI keeps it from rotting)
"""

from __future__ import annotations

import argparse
import base64
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKSPACE, USER = "bench-ws", "bench-user"
SEED = """
INSERT INTO crm_contacts (id, workspace_id, connection_id, provider, resource, external_id, display_name,
    given_name, family_name, emails, phones, organization, job_title, primary_email, created_at, updated_at)
SELECT gen_random_uuid(), :workspace, :connection, 'google', '', 'people/c' || i, 'Person ' || i, 'Person',
    'Number ' || i, json_build_array(json_build_object('value', 'person' || i || '@example.com', 'type', 'home')),
    json_build_array(json_build_object('value', '+4144' || lpad(i::text, 7, '0'), 'type', 'mobile')),
    'Company ' || (i % 500), 'Engineer', 'person' || i || '@example.com', now(), now()
FROM generate_series(1, :count) AS i
"""


class Document(msgspec.Struct):
    """The export's tables, each row kept as raw bytes: counting them builds no Python objects."""

    tables: dict[str, list[msgspec.Raw]]
    counts: dict[str, int]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Sampler(threading.Thread):
    """The peak resident memory of a process, sampled every 10 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, rss_kib(pid), 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, rss_kib(self.pid))
            self.samples += 1

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def seed(db_url: str, count: int) -> uuid.UUID:
    from sqlalchemy import text

    from core.db import make_engine, session_factory, transaction
    from core.models import Connection

    engine = make_engine(db_url)
    with transaction(session_factory(engine)) as session:
        connection = Connection(
            workspace_id=WORKSPACE, user_id=USER, auth_provider="google", provider_account_id="bench-account"
        )
        session.add(connection)
        session.flush()
        session.execute(text(SEED), {"workspace": WORKSPACE, "connection": connection.id, "count": count})
        session.execute(text("ANALYZE crm_contacts"))
        connection_id = connection.id
    engine.dispose()
    return connection_id


def export_once(url: str, token: str, pid: int, expected: int) -> dict[str, Any]:
    before = rss_kib(pid)
    sampler = Sampler(pid)
    sampler.start()
    size = 0
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        with (
            httpx.Client(timeout=600) as client,
            client.stream("GET", f"{url}/api/v1/privacy/export", headers={"Authorization": f"Bearer {token}"}) as got,
        ):
            got.raise_for_status()
            for chunk in got.iter_raw():
                out.write(chunk)
                size += len(chunk)
        seconds = time.perf_counter() - started
        peak = sampler.stop()
        out.seek(0)
        document = msgspec.json.decode(out.read(), type=Document)
    found = len(document.tables["crm_contacts"])
    if found != expected or document.counts["crm_contacts"] != expected:
        sys.exit(f"the export holds {found} contacts (counted {document.counts['crm_contacts']}), not {expected}")
    return {
        "seconds": seconds,
        "mb_s": size / seconds / 1e6,
        "records_s": expected / seconds,
        "document_mb": size / 1e6,
        "rss_before_mb": before / 1024,
        "rss_peak_mb": peak / 1024,
        "rss_growth_mb": (peak - before) / 1024,
        "samples": sampler.samples,
    }


def delete_cost(db_url: str, connection_id: uuid.UUID) -> dict[str, float]:
    """Delete every contact of the connection in a rolled-back transaction, with the tombstone trigger writing
    and with it switched off: the trigger's share of a bulk delete."""
    import psycopg

    from core.settings import normalise_database_url

    plain = normalise_database_url(db_url).replace("postgresql+psycopg://", "postgresql://")
    timings: dict[str, float] = {}
    with psycopg.connect(plain) as connection:
        for label, setting in (("delete_with_tombstones_s", "on"), ("delete_without_tombstones_s", "off")):
            with connection.transaction(force_rollback=True), connection.cursor() as cursor:
                cursor.execute("SELECT set_config('synchub.tombstones', %s, true)", (setting,))
                started = time.perf_counter()
                cursor.execute("DELETE FROM crm_contacts WHERE connection_id = %s", (connection_id,))
                timings[label] = time.perf_counter() - started
    return timings


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from core.identity import issue_token
    from core.settings import normalise_database_url
    from hub.database import scratch_database
    from tests.servers import redis_server

    admin_url = normalise_database_url(os.environ["SYNCHUB_TEST_PG_ADMIN_URL"])
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as folder,
        redis_server(Path(folder)) as redis_url,
        scratch_database(admin_url, "synchub_bench") as db_url,
    ):
        port, jwt_secret = free_port(), secrets.token_urlsafe(48)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUB_")} | {
            "SYNCHUB_DATABASE_URL": db_url,
            "SYNCHUB_REDIS_URL": redis_url,
            "SYNCHUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SYNCHUB_VAULT__KEYS": f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
            "SYNCHUB_VAULT__ACTIVE_KEY_ID": "1",
            "SYNCHUB_IDENTITY__JWT_SECRET": jwt_secret,
            "SYNCHUB_CONNECTORS": "",
            "SYNCHUB_LOG_LEVEL": "WARNING",
        }
        argv = [sys.executable, "-m", "hub", "api", "--port", str(port)]
        api = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            connection_id = seed(db_url, args.records)  # while the API starts
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or api.poll() is not None:
                    raise RuntimeError("the API did not come up")
                time.sleep(0.05)
            warm = issue_token(jwt_secret, "nobody", WORKSPACE, 3600)  # imports and statement caches, not timed
            httpx.get(f"{url}/api/v1/privacy/export", headers={"Authorization": f"Bearer {warm}"}, timeout=60)
            print(f"ready after {time.perf_counter() - began:.1f} s (database, seed, API start)")
            token = issue_token(jwt_secret, USER, WORKSPACE, 3600)
            for _ in range(args.repeats):
                row = export_once(url, token, api.pid, args.records)
                row.update(delete_cost(db_url, connection_id))
                rows.append(row)
                print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        finally:
            os.killpg(api.pid, signal.SIGTERM)
            try:
                api.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(api.pid, signal.SIGKILL)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="10,000 contacts, once")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.small:
        args.records, args.repeats = 10_000, 1
    when = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"bench_export {when}: {args.records} contacts, {args.repeats} repeats")
    rows = run(args)
    print()
    for key in rows[0]:
        values = [row[key] for row in rows]
        spread = f" (min {min(values):.3f}, max {max(values):.3f})" if len(values) > 1 else ""
        print(f"{key}: median {statistics.median(values):.3f}{spread}")


if __name__ == "__main__":
    main()
