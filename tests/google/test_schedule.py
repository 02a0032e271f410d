"""What is due comes from the database: runs the queue never got, failing schedules, the watchdog, and the CLI's
pause and resume. Real beat ticking every second; each test starts the workers it needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text

from core.db import make_engine
from core.identity import issue_token
from hub.app import create_app
from tests.conftest import ROOT, Beat, LiveServer, Worker, clean_environ, settings_from_env, wait_for
from tests.google.conftest import PAGE_SIZE, GoogleHub, new_account
from tests.google.test_run_hygiene import runs_of, settled
from tests.google.test_token_pressure import connected, make_due

PEOPLE = "/v1/people"


@pytest.fixture(scope="module")
def schedule_hub(google_hub_factory: Callable[..., GoogleHub]) -> Iterator[GoogleHub]:
    hub = google_hub_factory(
        SYNCHUB_SCHEDULE__TICK_SECONDS="1",
        SYNCHUB_SCHEDULE__HEARTBEAT_TIMEOUT_SECONDS="4",
        SYNCHUB_SCHEDULE__MAX_ATTEMPTS="2",
        SYNCHUB_SCHEDULE__FAILURE_BACKOFF_SECONDS="1",
        SYNCHUB_CELERY__TASK_TIME_LIMIT="8",
        SYNCHUB_CELERY__TASK_SOFT_TIME_LIMIT="6",
        SYNCHUB_CELERY__SYNC_TIME_BUDGET="3",
        SYNCHUB_CELERY__MAX_COUNTDOWN="2",
    )
    beat = Beat(hub.env).start()
    yield hub
    beat.stop()


@pytest.fixture
def worker(schedule_hub: GoogleHub) -> Iterator[Worker]:
    started = Worker(schedule_hub.env, queues="sync,maintenance", concurrency=1).start()
    yield started
    started.stop()


def schedule_row(hub: GoogleHub, connection_id: uuid.UUID) -> dict[str, Any]:
    with hub.engine.connect() as db:
        row = db.execute(text("select * from schedules where connection_id = :c"), {"c": connection_id}).mappings()
        return dict(row.one())


def test_a_run_the_queue_never_got_is_started_by_the_next_tick(schedule_hub: GoogleHub, worker: Worker) -> None:
    hub = schedule_hub
    browser = hub.browser(user="no-redis")
    account, connection_id = connected(hub, browser)
    hub.admin.add_contact(account, {"names": [{"givenName": "Late", "familyName": "Arrival"}]})

    cut_off = {**hub.env, "SYNCHUB_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    engine = make_engine(hub.settings.database_url)
    with LiveServer(create_app(settings_from_env(cut_off), engine)) as api:
        bearer = {"Authorization": f"Bearer {issue_token(hub.jwt_secret, 'no-redis', 'ws-g', 600)}"}
        answer = browser.post(f"{api.url}/api/v1/connections/{connection_id}/sync", headers=bearer)
    engine.dispose()
    assert answer.status_code == 200
    run_id = answer.json()["runs"]["contacts"]
    assert run_id is not None, "the run is recorded even though Redis could not take it"
    run = hub.wait_run(browser, connection_id, run_id)  # only beat's tick, which reaches Redis, can have sent it
    assert run["status"] == "succeeded" and run["counts"]["created"] == 1


def test_failing_runs_show_failed_keep_the_schedule_and_the_next_success_clears_it(
    schedule_hub: GoogleHub, worker: Worker
) -> None:
    hub = schedule_hub
    browser = hub.browser(user="flaky")
    _account, connection_id = connected(hub, browser)
    hub.admin.set_faults([{"path_prefix": PEOPLE, "status": 500, "rate": 1.0}])
    try:
        failed = hub.sync_now(browser, connection_id)
        assert failed["status"] == "failed" and "gave up after 2 attempts" in failed["error"]
        assert "500" in failed["error"]
        capability = hub.capability(browser, connection_id)
        assert capability["state"] == "failed" and capability["state_words"] == "failed"
        wait_for(lambda: schedule_row(hub, connection_id)["failures"] >= 3, timeout=60, what="scheduled retries")
        row = schedule_row(hub, connection_id)
        assert "500" in row["last_error"]
    finally:
        hub.admin.clear_faults()
    cleared = wait_for(
        lambda: (r := schedule_row(hub, connection_id))["failures"] == 0 and r, timeout=60, what="a success"
    )
    assert cleared["last_error"] is None and cleared["last_success_at"] is not None
    assert hub.capability(browser, connection_id)["state"] == "ok"
    scheduled = [r for r in runs_of(hub, connection_id) if r["trigger"] == "schedule"]
    assert len(scheduled) >= 3 and scheduled[-1]["status"] == "succeeded"


def test_the_watchdog_requeues_a_run_whose_worker_and_message_are_gone(schedule_hub: GoogleHub) -> None:
    hub, admin = schedule_hub, schedule_hub.admin
    pages = 30
    account = new_account(admin, contacts=pages * PAGE_SIZE)
    admin.set_faults([{"path_prefix": PEOPLE, "status": None, "rate": 1.0, "latency_ms": 120}])
    first = Worker(hub.env, queues="sync", concurrency=1).start()
    second: Worker | None = None
    try:
        browser = hub.browser(user="watchdog")
        mark = hub.log_mark()
        connection_id = hub.connect(browser, account)
        wait_for(lambda: runs_of(hub, connection_id)[0]["progress_done"] >= 5 * PAGE_SIZE, what="5 pages")
        assert first.process is not None
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
        client = redis.Redis.from_url(hub.settings.redis_url)
        gone = client.delete("unacked", "unacked_index", "sync")
        assert gone >= 1, "the killed worker's message was in Redis and is now gone"
        run = runs_of(hub, connection_id)[0]
        assert run["status"] == "running" and run["progress_done"] < pages * PAGE_SIZE
        killed_at = hub.log_mark()

        second = Worker(hub.env, queues="sync,maintenance", concurrency=1).start()
        runs = wait_for(lambda: settled(hub, connection_id), timeout=120, interval=0.2, what="the re-queued run")
    finally:
        admin.clear_faults()
        first.stop()
        if second is not None:
            second.stop()
    assert [r["id"] for r in runs] == [run["id"]] and runs[0]["status"] == "succeeded"
    stored = Counter(c["external_id"] for c in hub.contacts(browser, connection_id))
    assert len(stored) == pages * PAGE_SIZE and set(stored.values()) == {1}
    after = [e for e in hub.people_calls(account, killed_at) if e["status"] == 200]
    assert after and all("pageToken=" in e["query"] for e in after), "resumed from its checkpoint"
    total = [e for e in hub.people_calls(account, mark) if e["status"] == 200]
    assert pages <= len(total) <= pages + 2, "at most the pages in flight at the kill are fetched again"


def synchub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env=clean_environ(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_pauses_and_resumes_a_connection(schedule_hub: GoogleHub, worker: Worker) -> None:
    hub = schedule_hub
    browser = hub.browser(user="operator")
    account, connection_id = connected(hub, browser)

    paused = synchub(hub.env, "pause", str(connection_id))
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    assert hub.connection(browser, connection_id)["status"] == "paused"
    assert synchub(hub.env, "pause", str(connection_id)).stdout.count("already paused") == 1

    resumed = synchub(hub.env, "resume", str(connection_id))
    assert resumed.returncode == 0 and "contacts: run" in resumed.stdout, resumed.stderr
    run_id = resumed.stdout.split("contacts: run ")[1].split()[0]
    assert hub.wait_run(browser, connection_id, run_id)["trigger"] == "resume"

    unknown = synchub(hub.env, "pause", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr
    bad = synchub(hub.env, "resume", "not-an-id")
    assert bad.returncode == 2 and "not a connection id" in bad.stderr
    hub.admin.revoke_grant(account, hub.client_id)
    hub.admin.expire_access_tokens(account=account, client_id=hub.client_id)
    make_due(hub, connection_id)
    wait_for(lambda: hub.connection(browser, connection_id)["status"] == "needs_reauth", what="needs_reauth")
    refused = synchub(hub.env, "resume", str(connection_id))
    assert refused.returncode == 1 and "reconnect it first" in refused.stderr
    page = httpx.get(f"{hub.url}/", cookies=browser.cookies).text
    assert "Reconnect" in page


def test_a_connection_can_poll_on_its_own_interval_within_bounds(schedule_hub: GoogleHub, worker: Worker) -> None:
    hub = schedule_hub
    browser = hub.browser(user="interval")
    _account, connection_id = connected(hub, browser)
    url = f"{hub.url}/api/v1/connections/{connection_id}/schedule/contacts"
    assert hub.capability(browser, connection_id)["schedule"]["interval_seconds"] == 900

    changed = browser.put(url, json={"interval_seconds": 3600})
    assert changed.status_code == 200 and changed.json()["interval_seconds"] == 3600
    assert hub.capability(browser, connection_id)["schedule"]["interval_seconds"] == 3600
    for bad in (299, 86401, "often"):
        refused = browser.put(url, json={"interval_seconds": bad})
        assert refused.status_code == 422, bad
    assert schedule_row(hub, connection_id)["interval_seconds"] == 3600, "a refused change changes nothing"
    back = browser.put(url, json={"interval_seconds": None})
    assert back.status_code == 200 and back.json()["interval_seconds"] == 900
    assert browser.put(f"{hub.url}/api/v1/connections/{connection_id}/schedule/calendar", json={}).status_code in (
        404,
        422,
    )
    stranger = hub.browser(user="someone-else")
    assert stranger.put(url, json={"interval_seconds": 3600}).status_code == 404

    page = browser.post(f"{hub.url}/connections/{connection_id}/pause")
    assert page.status_code == 303 and hub.connection(browser, connection_id)["status"] == "paused"
    assert "Resume syncing" in browser.get(f"{hub.url}/").text
    assert stranger.post(f"{hub.url}/api/v1/connections/{connection_id}/resume").status_code == 404
    assert browser.post(f"{hub.url}/connections/{connection_id}/resume").status_code == 303
    assert hub.connection(browser, connection_id)["status"] == "active"
