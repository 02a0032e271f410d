"""Beat's tick inserts what is due in one statement and sends it in batches; a worker runs a batch's runs one after
another, and a batch delivered again after its worker was killed runs each of its runs to the end exactly once."""

from __future__ import annotations

import base64
import json
import os
import signal
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from core.db import transaction
from core.models import utcnow
from sync.celery_app import make_celery
from sync.dispatch import BATCH_SIZE, BATCH_TASK, RUN_TASK, hand_over_batches
from sync.runtime import Runtime
from sync.schedule import tick
from sync.throttle import Bucket, Throttle
from sync.wiring import build_engine
from tests.conftest import Worker, wait_for
from tests.google.conftest import GoogleHub, new_account
from tests.google.sealed import CONTACTS_READONLY, sealed_contacts_connection
from token_vault.vault import Vault, key_ring

CONTACTS = CONTACTS_READONLY
PEOPLE = "/v1/people"

FLEET = text(
    """
    WITH made AS (
      INSERT INTO connections (id, workspace_id, user_id, auth_provider, provider_account_id, status,
          granted_scopes, capabilities, sharing, created_at, updated_at, refresh_failures)
      SELECT gen_random_uuid(), :workspace, 'u' || i, 'google', 'acct-' || i, :status, CAST(:scopes AS json),
          '["contacts"]'::json, 'owner', now(), now(), 0
      FROM generate_series(1, :n) AS i
      RETURNING id
    )
    INSERT INTO schedules (connection_id, capability, resource, next_run_at, failures)
    SELECT id, 'contacts', '', now() + :due_in * interval '1 second', 0 FROM made
    RETURNING connection_id
    """
)


def fleet(
    hub: GoogleHub,
    workspace: str,
    n: int,
    status: str = "active",
    scopes: tuple[str, ...] = (CONTACTS,),
    due_in: float = -1,
) -> list[uuid.UUID]:
    """`n` connections and their schedules made by SQL, as a large fleet is made for the benchmark."""
    params = {"workspace": workspace, "n": n, "status": status, "scopes": json.dumps(scopes), "due_in": due_in}
    with transaction(hub.sessions) as session:
        return list(session.scalars(FLEET, params))


def queued_batches(client: redis.Redis) -> list[list[str]]:
    """The run ids each batch message in the `sync` queue names, taking the messages off the queue."""
    named = []
    while (raw := client.rpop("sync")) is not None:
        message = json.loads(raw)
        assert message["headers"]["task"] == BATCH_TASK
        args = json.loads(base64.b64decode(message["body"]))[0]
        named.append(args[0])
    return named


def runs_of(hub: GoogleHub, workspace: str) -> list[dict[str, object]]:
    with hub.engine.connect() as db:
        rows = db.execute(
            text(
                "SELECT r.*, c.user_id FROM sync_runs r JOIN connections c ON c.id = r.connection_id "
                "WHERE c.workspace_id = :w"
            ),
            {"w": workspace},
        )
        return [dict(row) for row in rows.mappings()]


def test_the_tick_inserts_every_due_run_at_once_and_sends_them_in_batches_of_at_most_100(
    google_hub_factory: Callable[..., GoogleHub],
) -> None:
    hub = google_hub_factory()
    engine = build_engine(Runtime(hub.settings, hub.engine, hub.sessions, redis.Redis.from_url(hub.settings.redis_url)))
    celery = make_celery(hub.settings)
    client = redis.Redis.from_url(hub.settings.redis_url)
    workspace = f"ws-tick-{uuid.uuid4().hex[:6]}"
    due = fleet(hub, workspace, 2000)
    later = fleet(hub, workspace + "-later", 5, due_in=3600)
    paused = fleet(hub, workspace + "-paused", 3, status="paused")
    unscoped = fleet(hub, workspace + "-unscoped", 3, scopes=())
    busy = due[0]
    with transaction(hub.sessions) as session:
        session.execute(
            text(
                "INSERT INTO sync_runs (id, connection_id, capability, resource, status, trigger, full_sync, "
                "records_created, records_updated, records_deleted, api_calls, progress_done, attempts, created_at, "
                "enqueued_at) VALUES (gen_random_uuid(), :c, 'contacts', '', 'running', 'manual', false, 0, 0, 0, 0, "
                "0, 0, now(), now())"
            ),
            {"c": busy},
        )
    sent: list[int] = []

    def send(run_ids: list[uuid.UUID], stamp: datetime) -> int:
        sent.append(len(run_ids))
        return hand_over_batches(hub.sessions, celery, run_ids, stamp)

    before = utcnow()
    report = tick(hub.sessions, hub.settings, send, engine.worked_on)
    assert report.scheduled == len(due) - 1, "the stream with a running run gets no second one"
    assert report.handed_over == len(due) - 1 and sent == [len(due) - 1]
    batches = queued_batches(client)
    assert len(batches) == 20 and max(len(b) for b in batches) == BATCH_SIZE

    runs = runs_of(hub, workspace)
    scheduled = [r for r in runs if r["trigger"] == "schedule"]
    assert Counter(r["connection_id"] for r in runs).most_common(1)[0][1] == 1, "one active run per stream"
    assert {str(r["id"]) for r in scheduled} == {run_id for batch in batches for run_id in batch}
    assert {r["status"] for r in scheduled} == {"queued"} and all(r["enqueued_at"] >= before for r in scheduled)
    for other in (later, paused, unscoped):
        assert not runs_of(
            hub, workspace + ("-later" if other is later else "-paused" if other is paused else "-unscoped")
        )
    with hub.engine.connect() as db:
        moved = db.execute(
            text("SELECT min(next_run_at) FROM schedules WHERE connection_id = ANY(:ids)"), {"ids": due + unscoped}
        ).scalar_one()
    assert moved >= before + timedelta(seconds=899), "every due schedule moved on by its interval"

    again = tick(hub.sessions, hub.settings, send, engine.worked_on)
    assert (again.scheduled, again.handed_over) == (0, 0) and not queued_batches(client)
    with transaction(hub.sessions) as session:
        session.execute(text("DELETE FROM connections WHERE workspace_id LIKE :w"), {"w": workspace + "%"})


def pool_child(worker: Worker) -> int:
    assert worker.process is not None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == worker.process.pid:
                return int(entry.name)
    raise AssertionError("the worker has no pool child")


def connected_fleet(hub: GoogleHub, workspace: str, accounts: list[str]) -> list[uuid.UUID]:
    """One connection per sandbox account, with its tokens and a schedule due now, as connecting leaves them."""
    vault = Vault(key_ring(hub.settings.vault))
    ids = []
    with transaction(hub.sessions) as session:
        for account in accounts:
            tokens = hub.admin.mint_tokens(account, hub.client_id, [CONTACTS])
            connection = sealed_contacts_connection(
                session, vault, tokens, workspace=workspace, user=account, account=account, scheduled=True
            )
            ids.append(connection.id)
    return ids


@pytest.fixture(scope="module")
def batch_hub(google_hub_factory: Callable[..., GoogleHub]) -> GoogleHub:
    """A hub whose run locks and heartbeats go stale within a second, under a small app quota (6 at once, then
    about 2 a second)."""
    return google_hub_factory(
        SYNCHUB_CELERY__RUN_LOCK_SECONDS="0.5",
        SYNCHUB_SCHEDULE__HEARTBEAT_TIMEOUT_SECONDS="1",
        SYNCHUB_GOOGLE_CONTACTS__APP_REQUESTS_PER_MINUTE="120",
    )


@pytest.fixture(scope="module")
def batch_worker(batch_hub: GoogleHub) -> Iterator[Worker]:
    """One worker process with one pool child, shared by the tests below (a killed child is replaced)."""
    worker = Worker(batch_hub.env, queues="sync,maintenance", concurrency=1).start()
    celery = make_celery(batch_hub.settings)
    assert celery.send_task("synchub.maintenance.ping", queue="maintenance").get(timeout=60)["database"]
    yield worker
    worker.stop(signal.SIGQUIT)  # nothing of theirs is left in flight: a cold shutdown


def test_a_batch_whose_worker_is_killed_is_delivered_again_and_each_run_ends_once(
    batch_hub: GoogleHub, batch_worker: Worker
) -> None:
    hub, worker = batch_hub, batch_worker
    Throttle(redis.Redis.from_url(hub.settings.redis_url)).clear(f"google_contacts:app:{hub.client_id}")
    engine = build_engine(Runtime(hub.settings, hub.engine, hub.sessions, redis.Redis.from_url(hub.settings.redis_url)))
    celery = make_celery(hub.settings)
    workspace = f"ws-batch-{uuid.uuid4().hex[:6]}"
    accounts = [new_account(hub.admin, contacts=1) for _ in range(6)]
    connected_fleet(hub, workspace, accounts)

    def one_batch(run_ids: list[uuid.UUID], stamp: datetime) -> int:
        celery.send_task(BATCH_TASK, args=[[str(r) for r in run_ids], stamp.isoformat()], queue="sync")
        return len(run_ids)

    mark = hub.log_mark()
    hub.admin.set_faults([{"path_prefix": PEOPLE, "status": None, "rate": 1.0, "latency_ms": 400}])
    try:
        assert tick(hub.sessions, hub.settings, one_batch, engine.worked_on).scheduled == len(accounts)
        wait_for(
            lambda: sum(r["status"] == "succeeded" for r in runs_of(hub, workspace)) >= 2,
            timeout=60,
            what="two runs of the batch to succeed",
        )
        os.kill(pool_child(worker), signal.SIGKILL)
        finished_before = {str(r["user_id"]) for r in runs_of(hub, workspace) if r["status"] == "succeeded"}
        assert len(finished_before) < len(accounts), "killed mid-batch"

        def all_ended() -> bool:
            tick(
                hub.sessions,
                hub.settings,
                lambda ids, at: hand_over_batches(hub.sessions, celery, ids, at),
                engine.worked_on,
            )  # the watchdog, for a run whose lock outlived its killed worker
            return all(r["status"] == "succeeded" for r in runs_of(hub, workspace))

        wait_for(all_ended, timeout=60, interval=0.3, what="every run of the batch to end")
    finally:
        hub.admin.clear_faults()
    runs = runs_of(hub, workspace)
    assert len(runs) == len(accounts) and len({r["connection_id"] for r in runs}) == len(accounts)
    calls = Counter(e["account"] for e in hub.admin.request_log(mark) if e["path"].startswith(PEOPLE))
    assert all(calls[account] == 1 for account in finished_before), "a finished run is skipped when redelivered"
    assert all(1 <= calls[account] <= 2 for account in accounts), calls
    with hub.engine.connect() as db:
        stored = db.execute(
            text(
                "SELECT count(*), count(DISTINCT (connection_id, external_id)) FROM crm_contacts "
                "WHERE connection_id IN (SELECT id FROM connections WHERE workspace_id = :w)"
            ),
            {"w": workspace},
        ).one()
    assert tuple(stored) == (len(accounts), len(accounts)), "each contact once"


def test_runs_that_find_the_quota_spent_wait_their_turn_once_and_are_not_attempts(
    batch_hub: GoogleHub, batch_worker: Worker
) -> None:
    hub = batch_hub
    throttle, app = Throttle(redis.Redis.from_url(hub.settings.redis_url)), f"google_contacts:app:{hub.client_id}"
    throttle.clear(app)
    while throttle.take([Bucket.per_minute(app, 120)]) == 0:
        continue  # the app's quota is spent: every run of the burst finds the bucket empty
    engine = build_engine(Runtime(hub.settings, hub.engine, hub.sessions, redis.Redis.from_url(hub.settings.redis_url)))
    celery = make_celery(hub.settings)
    workspace = f"ws-burst-{uuid.uuid4().hex[:6]}"
    accounts = [new_account(hub.admin, contacts=1) for _ in range(4)]
    connected_fleet(hub, workspace, accounts)
    mark = hub.log_mark()
    sent = tick(
        hub.sessions, hub.settings, lambda ids, at: hand_over_batches(hub.sessions, celery, ids, at), engine.worked_on
    )
    assert sent.scheduled == len(accounts)
    wait_for(
        lambda: all(r["status"] == "succeeded" for r in runs_of(hub, workspace)),
        timeout=60,
        what="every run of the burst to end",
    )
    runs = runs_of(hub, workspace)
    assert [r["attempts"] for r in runs] == [1] * len(accounts), "waiting for the quota is not an attempt"
    assert [r["api_calls"] for r in runs] == [1] * len(accounts)
    calls = [e for e in hub.admin.request_log(mark) if e["path"].startswith(PEOPLE)]
    assert len(calls) == len(accounts) and {e["status"] for e in calls} == {200}

    lines = [json.loads(line) for line in batch_worker.output().splitlines() if line.startswith("{")]
    again = Counter(
        line.get("run_id") for line in lines if line.get("task") == RUN_TASK and "succeeded" in line["message"]
    )
    resent = {run_id: n for run_id, n in again.items() if run_id in {str(r["id"]) for r in runs}}
    assert len(resent) >= 2, "runs that found the bucket empty came back for their reserved token"
    assert set(resent.values()) == {1}, "each came back once: its batch, then one message of its own"
