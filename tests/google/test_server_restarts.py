"""A sync in progress survives its Redis and its PostgreSQL restarting, and a killed worker's run is taken over
within the run lock's life; the module runs its own Redis (no persistence) and PostgreSQL, so restarting them
disturbs no other test. The chaos benchmark (bench/chaos_contacts.py) does all of this at once, at size."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from sync.celery_app import make_celery
from tests.conftest import Beat, Worker, wait_for
from tests.google import truth
from tests.google.conftest import PAGE_SIZE, TERMINAL, GoogleHub, new_account
from tests.servers import PostgresServer, RedisServer, running_postgres, running_redis

PAGES = 24
RUN_LOCK_SECONDS = 1.0
RECONNECT_SECONDS = 0.2
LIMITS = {
    # The task time limit stays at google_env's 20 s: a lock living that long would fail the takeover test.
    "SYNCHUB_CELERY__RUN_LOCK_SECONDS": str(RUN_LOCK_SECONDS),
    "SYNCHUB_CELERY__BROKER_RECONNECT_SECONDS": str(RECONNECT_SECONDS),
    "SYNCHUB_CELERY__SYNC_TIME_BUDGET": "3",
    "SYNCHUB_SCHEDULE__TICK_SECONDS": "0.5",
    "SYNCHUB_SCHEDULE__HEARTBEAT_TIMEOUT_SECONDS": "1",
    "SYNCHUB_SCHEDULE__MAX_ATTEMPTS": "20",
}
SLOW_PAGES = [{"path_prefix": "/v1/people", "status": None, "rate": 1.0, "latency_ms": 50}]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RedisServer, PostgresServer]]:
    # Not in pytest's temporary tree: another session's start makes its root private again (PostgreSQL runs as
    # its own user when we are root) and deletes all but the last three sessions' folders.
    folder = Path(tempfile.mkdtemp(prefix="synchub-restarts-"))
    try:
        with running_postgres(folder / "pg") as postgres, running_redis(folder) as redis_server:
            yield redis_server, postgres
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def restart_hub(
    servers: tuple[RedisServer, PostgresServer], google_hub_factory: Callable[..., GoogleHub]
) -> Iterator[GoogleHub]:
    redis_server, postgres = servers
    hub = google_hub_factory(SYNCHUB_DATABASE_URL=postgres.url, SYNCHUB_REDIS_URL=redis_server.url, **LIMITS)
    maintenance = Worker(hub.env, queues="maintenance", concurrency=1).start()
    beat = Beat(hub.env).start()
    yield hub
    beat.stop(signal.SIGKILL)  # nothing of theirs is kept: the servers go too
    maintenance.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def sync_workers(restart_hub: GoogleHub) -> Iterator[list[Worker]]:
    """The module's sync worker, started once (2-3 s); a test that kills it leaves its replacement here."""
    workers = [Worker(restart_hub.env, queues="sync", concurrency=1).start()]
    yield workers
    for worker in workers:
        worker.stop(signal.SIGKILL)


def latest_run(hub: GoogleHub, connection_id: uuid.UUID) -> tuple[str, int]:
    """(status, committed progress) of the connection's latest run; ('', 0) while the database is away."""
    try:
        with hub.engine.connect() as db:
            row = db.execute(
                text("select status, progress_done from sync_runs where connection_id = :c order by created_at desc"),
                {"c": connection_id},
            ).first()
    except Exception:
        return "", 0
    return (str(row[0]), int(row[1] or 0)) if row else ("", 0)


def rows(hub: GoogleHub, connection_id: uuid.UUID) -> dict[str, str]:
    """The CRM's contact rows of the connection: row id to the provider's id."""
    with hub.engine.connect() as db:
        found = db.execute(
            text("select id::text, external_id from crm_contacts where connection_id = :c"), {"c": connection_id}
        ).all()
    return {row_id: external_id for row_id, external_id in found}


def start_sync(hub: GoogleHub, user: str) -> tuple[uuid.UUID, str]:
    """Connect a new account of PAGES pages, its pages slowed to 50 ms, and wait until a quarter is committed."""
    account = new_account(hub.admin, contacts=PAGES * PAGE_SIZE)
    hub.admin.set_faults(SLOW_PAGES, seed=3)
    connection_id = hub.connect(hub.browser(user=user), account)
    wait_for(
        lambda: latest_run(hub, connection_id)[1] >= PAGES // 4 * PAGE_SIZE, timeout=30, what="a quarter committed"
    )
    return connection_id, account


def finish(hub: GoogleHub, connection_id: uuid.UUID, timeout: float) -> float:
    """Seconds until the run ends; it must have succeeded."""
    started = time.monotonic()
    try:
        wait_for(lambda: latest_run(hub, connection_id)[0] in TERMINAL, timeout=timeout, what="the run to end")
    finally:
        hub.admin.clear_faults()
    status, done = latest_run(hub, connection_id)
    assert (status, done) == ("succeeded", PAGES * PAGE_SIZE)
    return time.monotonic() - started


def assert_equals_sandbox(
    hub: GoogleHub, user: str, connection_id: uuid.UUID, account: str, before: dict[str, str]
) -> None:
    """The CRM holds exactly the sandbox's contacts, once each, and every row seen before the fault kept its id."""
    listed = [c["external_id"] for c in hub.contacts(hub.browser(user=user), connection_id)]
    assert len(listed) == len(set(listed)) == PAGES * PAGE_SIZE, "a contact is missing or doubled"
    assert set(listed) == set(truth.people(hub.admin, account, hub.client_id))
    now = rows(hub, connection_id)
    assert before and all(now.get(row_id) == external_id for row_id, external_id in before.items())


def test_a_sync_survives_a_redis_restart(
    restart_hub: GoogleHub, servers: tuple[RedisServer, PostgresServer], sync_workers: list[Worker]
) -> None:
    hub, (redis_server, _) = restart_hub, servers
    connection_id, account = start_sync(hub, "redis-restart")
    before = rows(hub, connection_id)
    redis_server.restart(down_seconds=0.5)  # the queue, the unacked message and the run's lock are gone
    took = finish(hub, connection_id, timeout=30)
    assert_equals_sandbox(hub, "redis-restart", connection_id, account, before)
    assert took < 10, f"the run took {took:.1f}s to end after Redis came back"


def test_a_sync_survives_a_postgresql_restart(
    restart_hub: GoogleHub, servers: tuple[RedisServer, PostgresServer], sync_workers: list[Worker]
) -> None:
    hub, (_, postgres) = restart_hub, servers
    connection_id, account = start_sync(hub, "postgres-restart")
    before = rows(hub, connection_id)
    postgres.restart(down_seconds=0.5)  # fast shutdown: every session ends, a page's transaction rolls back
    took = finish(hub, connection_id, timeout=30)
    assert_equals_sandbox(hub, "postgres-restart", connection_id, account, before)
    assert took < 10, f"the run took {took:.1f}s to end after PostgreSQL came back"


def test_a_killed_workers_run_is_taken_over_within_the_lock_life(
    restart_hub: GoogleHub, sync_workers: list[Worker]
) -> None:
    hub = restart_hub
    connection_id, account = start_sync(hub, "takeover")
    first = sync_workers[-1]
    assert first.process is not None
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()
    killed = time.monotonic()
    before = rows(hub, connection_id)
    at_kill = latest_run(hub, connection_id)[1]
    sync_workers.append(Worker(hub.env, queues="sync", concurrency=1).start())
    ready = time.monotonic() - killed  # the new worker's start: 2-3 s on 2 quiet cores, far more under load
    wait_for(lambda: latest_run(hub, connection_id)[1] > at_kill, timeout=30, what="a page committed again")
    taken_over = time.monotonic() - killed
    finish(hub, connection_id, timeout=30)
    assert_equals_sandbox(hub, "takeover", connection_id, account, before)
    # The later of the lock's end and the new worker being ready, then a stale heartbeat (1 s), a tick (0.5 s) and
    # slack for a loaded machine: a lock living task_time_limit (20 s here) would not be free in time.
    limit = max(RUN_LOCK_SECONDS, ready) + 4
    assert taken_over < limit, f"taken over after {taken_over:.1f}s (worker ready after {ready:.1f}s)"


def test_an_idle_worker_is_back_within_its_reconnect_interval(
    restart_hub: GoogleHub, servers: tuple[RedisServer, PostgresServer], sync_workers: list[Worker]
) -> None:
    hub, (redis_server, _) = restart_hub, servers
    celery = make_celery(hub.settings)
    ping = celery.send_task("synchub.maintenance.ping", queue="sync")  # to the module's sync worker
    assert ping.get(timeout=30)["redis"] is True  # the worker is up and consuming
    # Down for 2.5 s: kombu's backoff would try at 0, 2 and 6 s, so it would be back 3.5 s after Redis is.
    redis_server.restart(down_seconds=2.5)
    back = time.monotonic()
    answer = celery.send_task("synchub.maintenance.ping", queue="sync").get(timeout=30)
    took = time.monotonic() - back
    assert answer["pid"] != os.getpid()
    assert took < 1.5, f"the worker took {took:.1f}s to consume again after Redis came back"
