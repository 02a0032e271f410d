"""A run whose start fails in the worker (a real database error in its first transaction) is started again within
seconds, without a beat; when every retry fails too, it is left to the tick, never dropped."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from sync.celery_app import make_celery
from sync.retry import START_RETRIES
from tests.conftest import Worker, wait_for
from tests.google.conftest import TERMINAL, GoogleHub, new_account


@pytest.fixture(scope="module")
def start_hub(google_hub_factory: Callable[..., GoogleHub]) -> GoogleHub:
    return google_hub_factory()


@contextlib.contextmanager
def failing_starts(engine: Engine, connection_id: uuid.UUID, times: int) -> Iterator[Callable[[], int]]:
    """A trigger on sync_runs that raises in the first `times` transactions moving this connection's run to
    'running'; yields how many such transactions were tried (a sequence counts them, since it outlives a
    rollback)."""
    name = f"start_fault_{uuid.uuid4().hex[:10]}"
    body = f"""
        BEGIN
            IF NEW.connection_id = '{connection_id}' AND NEW.status = 'running' AND OLD.status <> 'running' THEN
                IF nextval('{name}') <= {times} THEN
                    RAISE EXCEPTION 'injected fault: the start of run % failed', NEW.id;
                END IF;
            END IF;
            RETURN NEW;
        END"""
    with engine.begin() as db:
        db.execute(text(f"CREATE SEQUENCE {name}"))
        db.execute(text(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $${body}$$"))
        db.execute(text(f"CREATE TRIGGER {name} BEFORE UPDATE ON sync_runs FOR EACH ROW EXECUTE FUNCTION {name}()"))

    def tried() -> int:
        with engine.connect() as db:
            row = db.execute(text(f"SELECT last_value, is_called FROM {name}")).one()  # noqa: S608
        return int(row.last_value) if row.is_called else 0

    try:
        yield tried
    finally:
        with engine.begin() as db:
            db.execute(text(f"DROP TRIGGER {name} ON sync_runs"))
            db.execute(text(f"DROP FUNCTION {name}()"))
            db.execute(text(f"DROP SEQUENCE {name}"))


def run_row(hub: GoogleHub, run_id: str) -> dict[str, Any]:
    with hub.engine.connect() as db:
        row = db.execute(
            text("select status, enqueued_at, attempts, error from sync_runs where id = :r"), {"r": run_id}
        ).one()
    return dict(row._mapping)


def queued_run(hub: GoogleHub, user: str, contacts: int) -> tuple[uuid.UUID, str]:
    """A connection whose first run is queued and handed to the queue, with no worker running yet."""
    browser = hub.browser(user=user)
    connection_id = hub.connect(browser, new_account(hub.admin, contacts=contacts))
    run = hub.capability(browser, connection_id)["last_run"]
    assert run["status"] == "queued" and run_row(hub, run["id"])["enqueued_at"] is not None
    return connection_id, run["id"]


def test_a_run_whose_start_fails_is_started_again_within_seconds(
    start_hub: GoogleHub, worker_factory: Callable[..., Worker]
) -> None:
    hub = start_hub
    connection_id, run_id = queued_run(hub, "starter", contacts=60)
    with failing_starts(hub.engine, connection_id, times=1) as tried:
        worker = worker_factory(env=hub.env, queues="sync")
        wait_for(lambda: tried() >= 1, timeout=60, what="the worker to try the run's start")
        wait_for(lambda: run_row(hub, run_id)["status"] in TERMINAL, timeout=5, what="the run to start again")
        assert tried() == 2, "one start failed, the next one worked"
    run = run_row(hub, run_id)
    assert run["status"] == "succeeded" and run["attempts"] == 1, run
    assert "injected fault" in worker.output()
    assert len(hub.contacts(hub.browser(user="starter"), connection_id)) == 60


def test_a_run_whose_every_start_fails_is_left_to_the_tick(
    start_hub: GoogleHub, worker_factory: Callable[..., Worker]
) -> None:
    hub = start_hub
    connection_id, run_id = queued_run(hub, "unlucky", contacts=10)
    with failing_starts(hub.engine, connection_id, times=1000) as tried:
        worker_factory(env=hub.env, queues="sync,maintenance")
        wait_for(lambda: run_row(hub, run_id)["enqueued_at"] is None, timeout=60, what="the run to be left to the tick")
        assert run_row(hub, run_id)["status"] == "queued"
        assert tried() == 1 + START_RETRIES, "the first delivery, then each retry"
    make_celery(hub.settings).send_task("synchub.maintenance.tick", queue="maintenance", ignore_result=True)
    wait_for(lambda: run_row(hub, run_id)["status"] in TERMINAL, timeout=30, what="the tick to send the run")
    assert run_row(hub, run_id)["status"] == "succeeded"
    assert len(hub.contacts(hub.browser(user="unlucky"), connection_id)) == 10
