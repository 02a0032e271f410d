"""A worker whose whole process group is killed mid-sync loses nothing and fetches no committed page again."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import text

from tests.conftest import Worker, wait_for
from tests.google.conftest import KILLABLE, PAGE_SIZE, GoogleHub, new_account

CONTACTS = 20 * PAGE_SIZE


@pytest.fixture(scope="module")
def crash_hub(google_hub_factory: Callable[..., GoogleHub]) -> GoogleHub:
    hub = google_hub_factory()
    hub.env.update(KILLABLE)
    return hub


def committed_pages(hub: GoogleHub, connection_id: object) -> int:
    with hub.engine.connect() as db:
        done = db.execute(
            text("select progress_done from sync_runs where connection_id = :c order by created_at desc limit 1"),
            {"c": connection_id},
        ).scalar()
    return int(done or 0) // PAGE_SIZE


def test_killed_worker_resumes_from_its_checkpoint(crash_hub: GoogleHub) -> None:
    hub, admin = crash_hub, crash_hub.admin
    account = new_account(admin, contacts=CONTACTS)
    admin.set_faults([{"path_prefix": "/v1/people", "status": None, "rate": 1.0, "latency_ms": 150}], seed=11)
    first = Worker(hub.env, queues="sync", concurrency=1).start()
    second: Worker | None = None
    try:
        browser = hub.browser(user="crash")
        connection_id = hub.connect(browser, account)
        wait_for(lambda: committed_pages(hub, connection_id) > 5, timeout=90, what="a checkpoint past page 5")
        assert first.process is not None
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
        pages_at_kill = committed_pages(hub, connection_id)
        assert 5 < pages_at_kill < 20, "the kill must land mid-sync"
        mark = hub.log_mark()

        second = Worker(hub.env, queues="sync", concurrency=1).start()
        run = hub.wait_run(browser, connection_id)
        assert run["status"] == "succeeded"
        assert run["full_sync"] is True and run["progress"] == {"done": CONTACTS, "total": CONTACTS}
    finally:
        admin.clear_faults()
        first.stop()
        if second is not None:
            second.stop()

    stored = Counter(c["external_id"] for c in hub.contacts(browser, connection_id))
    assert len(stored) == CONTACTS and set(stored.values()) == {1}
    fetched_after = [c for c in hub.people_calls(account, after=mark) if c["status"] == 200]
    in_flight_at_kill = 1
    assert 20 - pages_at_kill <= len(fetched_after) <= 20 - pages_at_kill + in_flight_at_kill
    assert all("pageToken=" in c["query"] for c in fetched_after), "the first page was fetched again"
