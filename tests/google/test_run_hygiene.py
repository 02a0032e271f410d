"""Throttle, retry and run hygiene with two real worker processes and a real beat against the sandbox Google:
a seeded fault storm, a shared pause after a 429, coalesced sync requests, and pause/resume mid-run."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Beat, Worker, wait_for
from tests.google import truth
from tests.google.conftest import PAGE_SIZE, TERMINAL, GoogleHub, new_account
from tests.google.test_token_beat import finished_scheduled_runs
from tests.google.test_token_pressure import connected, make_due

log = logging.getLogger(__name__)

STORM_SEED = 20  # with these rules, 100 pages meet more than 30 5xx and 10 429 (see the storm test)
PEOPLE = "/v1/people"


@pytest.fixture(scope="module")
def hygiene_hub(google_hub_factory: Callable[..., GoogleHub]) -> Iterator[GoogleHub]:
    hub = google_hub_factory(SYNCHUB_SCHEDULE__TICK_SECONDS="1")
    workers = [Worker(hub.env, queues="sync,maintenance", concurrency=1).start() for _ in range(2)]
    beat = Beat(hub.env).start()
    yield hub
    beat.stop()
    for worker in workers:
        worker.stop()


def storm_rules() -> list[dict[str, Any]]:
    """5% 429 with Retry-After 1, 2 or 3 s, 20% 503, and 0-200 ms of latency in 50 ms steps."""
    rules: list[dict[str, Any]] = [
        {"path_prefix": PEOPLE, "status": 429, "rate": 1 / 60, "retry_after": seconds} for seconds in (1, 2, 3)
    ]
    rules.append({"path_prefix": PEOPLE, "status": 503, "rate": 0.2})
    rules += [{"path_prefix": PEOPLE, "status": None, "rate": 0.5, "latency_ms": 50} for _ in range(4)]
    return rules


def runs_of(hub: GoogleHub, connection_id: uuid.UUID) -> list[dict[str, Any]]:
    with hub.engine.connect() as db:
        rows = db.execute(
            text(
                "select id, status, trigger, follow_up, full_sync, progress_done, progress_total, error from sync_runs "
                "where connection_id = :c order by created_at"
            ),
            {"c": connection_id},
        ).mappings()
        return [dict(row) for row in rows]


def settled(hub: GoogleHub, connection_id: uuid.UUID) -> list[dict[str, Any]] | None:
    runs = runs_of(hub, connection_id)
    return runs if runs and all(r["status"] in TERMINAL for r in runs) else None


def test_fault_storm_loses_and_doubles_nothing(hygiene_hub: GoogleHub) -> None:
    hub, admin = hygiene_hub, hygiene_hub.admin
    log.info("fault storm seed %s", STORM_SEED)
    accounts = [new_account(admin, contacts=2500) for _ in range(2)]
    browser = hub.browser(user="storm")
    mark = hub.log_mark()
    admin.set_faults(storm_rules(), seed=STORM_SEED)  # type: ignore[arg-type]
    try:
        connections = [hub.connect(browser, account) for account in accounts]
        finished = [
            wait_for(lambda c=c: settled(hub, c), timeout=300, interval=0.5, what="the storm's runs")
            for c in connections
        ]
    finally:
        admin.clear_faults()
    for runs in finished:
        assert [r["status"] for r in runs] == ["succeeded"], runs
    served = [e for e in admin.request_log(mark) if e["path"].startswith(PEOPLE) and e["fault"]]
    assert len([e for e in served if e["status"] >= 500]) >= 20
    assert len([e for e in served if e["status"] == 429]) >= 5
    for account, connection_id in zip(accounts, connections, strict=True):
        stored = hub.contacts(browser, connection_id)
        ids = Counter(c["external_id"] for c in stored)
        assert set(ids.values()) == {1}, "no contact twice"
        expected = {name: truth.expected(p) for name, p in truth.people(admin, account, hub.client_id).items()}
        assert {c["external_id"]: truth.as_stored(c) for c in stored} == expected


def test_a_429_pauses_the_app_for_every_worker(hygiene_hub: GoogleHub) -> None:
    hub, admin = hygiene_hub, hygiene_hub.admin
    accounts = [new_account(admin, contacts=20 * PAGE_SIZE) for _ in range(2)]
    browser = hub.browser(user="paused-app")
    mark = hub.log_mark()
    admin.set_faults(
        [
            {"path_prefix": PEOPLE, "status": 429, "rate": 1.0, "retry_after": 3, "times": 1, "skip": 10},
            {"path_prefix": PEOPLE, "status": None, "rate": 1.0, "latency_ms": 60},
        ]
    )
    try:
        connections = [hub.connect(browser, account) for account in accounts]
        for connection_id in connections:
            wait_for(lambda c=connection_id: settled(hub, c), timeout=120, interval=0.2, what="both runs")
    finally:
        admin.clear_faults()
    calls = [e for e in admin.request_log(mark) if e["path"].startswith(PEOPLE)]
    refused = [e for e in calls if e["status"] == 429]
    assert len(refused) == 1
    answered = refused[0]["time"] + refused[0]["duration_ms"] / 1000
    quiet = [e for e in calls if answered + 0.25 < e["time"] < answered + 3 - 0.05]
    assert quiet == [], "no worker called during the 3 s the provider asked for"
    assert any(e["time"] >= answered + 3 - 0.05 for e in calls), "the syncs went on afterwards"
    assert all(runs_of(hub, c)[-1]["status"] == "succeeded" for c in connections)


def test_two_requests_at_once_make_one_run_and_one_follow_up(hygiene_hub: GoogleHub) -> None:
    hub, admin = hygiene_hub, hygiene_hub.admin
    account = new_account(admin, contacts=20 * PAGE_SIZE)
    browser = hub.browser(user="coalesce")
    admin.set_faults([{"path_prefix": PEOPLE, "status": None, "rate": 1.0, "latency_ms": 100}])
    mark = hub.log_mark()
    try:
        connection_id = hub.connect(browser, account)
        wait_for(lambda: runs_of(hub, connection_id)[0]["progress_done"] > 0, what="the first run to be at work")
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(
                pool.map(lambda _: browser.post(f"{hub.url}/api/v1/connections/{connection_id}/sync").json(), range(2))
            )
        runs = wait_for(lambda: (r := settled(hub, connection_id)) and len(r) == 2 and r, timeout=120, what="runs")
    finally:
        admin.clear_faults()
    first, follow = runs
    assert {a["runs"]["contacts"] for a in answers} == {str(first["id"])}, "both requests joined the active run"
    assert first["trigger"] == "connect" and first["status"] == "succeeded"
    assert follow["trigger"] == "follow_up" and follow["status"] == "succeeded"
    # A follow-up is created in the transaction that ends its run, so a third run would already be there.
    assert first["follow_up"] is True and follow["follow_up"] is False
    assert len(runs_of(hub, connection_id)) == 2
    calls = [e["query"] for e in hub.people_calls(account, mark) if e["status"] == 200]
    page_tokens = [q for q in calls if "pageToken=" in q]
    assert len(page_tokens) == 19 and len(calls) == 21, "20 pages once each, then one incremental page"
    assert sum("syncToken=" in q for q in calls) == 1
    assert len(hub.contacts(browser, connection_id)) == 20 * PAGE_SIZE


def test_pause_stops_after_the_current_page_and_resume_continues(hygiene_hub: GoogleHub) -> None:
    hub, admin = hygiene_hub, hygiene_hub.admin
    pages = 40
    account = new_account(admin, contacts=pages * PAGE_SIZE)
    browser = hub.browser(user="pauser")
    _witness_account, witness = connected(hub, browser, contacts=2)
    admin.set_faults([{"path_prefix": PEOPLE, "status": None, "rate": 1.0, "latency_ms": 150}])
    try:
        mark = hub.log_mark()
        connection_id = hub.connect(browser, account)
        wait_for(lambda: runs_of(hub, connection_id)[0]["progress_done"] >= 5 * PAGE_SIZE, what="5 pages")
        paused = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/pause")
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        stopped = wait_for(lambda: settled(hub, connection_id), timeout=30, what="the run to stop")[0]
        assert stopped["status"] == "cancelled" and "paused" in stopped["error"]
        assert stopped["progress_done"] < pages * PAGE_SIZE
        assert hub.capability(browser, connection_id)["state"] == "paused"

        quiet_from = hub.log_mark()
        make_due(hub, connection_id)
        refused = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/sync").json()
        assert refused["runs"] == {"contacts": None}
        for period in (1, 2):  # beat ticks with the paused schedule due, proven by the witness's scheduled runs
            before = finished_scheduled_runs(hub, witness)
            make_due(hub, witness)
            wait_for(lambda b=before: finished_scheduled_runs(hub, witness) > b, timeout=30, what=f"tick {period}")
        assert hub.people_calls(account, quiet_from) == [], "a paused connection stays silent"

        resumed = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "active"
        runs = wait_for(lambda: (r := settled(hub, connection_id)) and len(r) == 2 and r, timeout=120, what="resume")
    finally:
        admin.clear_faults()
    assert runs[1]["trigger"] == "resume" and runs[1]["status"] == "succeeded"
    assert runs[1]["full_sync"] is True, "the run that finished the cancelled run's full pass"
    assert runs[1]["progress_done"] == runs[1]["progress_total"] == pages * PAGE_SIZE
    after = [e for e in hub.people_calls(account, quiet_from) if e["status"] == 200]
    assert after and all("pageToken=" in e["query"] for e in after), "resumed from the checkpoint, not page 1"
    fetched = [e for e in hub.people_calls(account, mark) if e["status"] == 200]
    assert pages <= len(fetched) <= pages + 1, "at most the page in flight at the pause is fetched again"
    assert len({c["external_id"] for c in hub.contacts(browser, connection_id)}) == pages * PAGE_SIZE
    again = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/resume")
    assert again.status_code == 200 and again.json()["changed"] is False
