"""A full pass over data the CRM already holds writes only what changed, counted by PostgreSQL itself."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.conftest import Worker, wait_for
from tests.google.conftest import KILLABLE, PAGE_SIZE, GoogleHub, new_account

Writes = dict[str, tuple[int, int, int]]


@pytest.fixture(scope="module")
def hub(google_hub_factory: Callable[..., GoogleHub]) -> GoogleHub:
    hub = google_hub_factory()
    hub.env.update(KILLABLE)
    return hub


def crm_writes(hub: GoogleHub) -> Writes:
    """(inserted, updated, deleted) tuples of every crm_* table, as PostgreSQL's statistics count them."""
    with hub.engine.connect() as db:
        db.execute(text("select pg_stat_clear_snapshot()"))
        rows = db.execute(
            text(
                "select relname, n_tup_ins, n_tup_upd, n_tup_del from pg_stat_user_tables "
                "where left(relname, 4) = 'crm_'"
            )
        ).all()
    return {name: (inserted, updated, deleted) for name, inserted, updated, deleted in rows}


def written(before: Writes, after: Writes) -> Writes:
    return {name: tuple(a - b for a, b in zip(after[name], before.get(name, (0, 0, 0)), strict=True)) for name in after}  # type: ignore[misc]


@contextmanager
def worker(hub: GoogleHub) -> Iterator[Worker]:
    """A worker whose database sessions carry their own application name; on the way out it is stopped and its
    backends are waited out, so each has flushed its table statistics (a backend does so when it exits)."""
    tag = f"full-pass-{uuid.uuid4().hex[:8]}"
    url = make_url(hub.env["SYNCHUB_DATABASE_URL"]).update_query_dict({"application_name": tag})
    started = Worker({**hub.env, "SYNCHUB_DATABASE_URL": url.render_as_string(hide_password=False)}, queues="sync")
    try:
        yield started.start()
    finally:
        started.stop()

        def gone() -> bool:
            with hub.engine.connect() as db:
                query = text("select count(*) from pg_stat_activity where application_name = :tag")
                return db.execute(query, {"tag": tag}).scalar_one() == 0

        wait_for(gone, timeout=30, what="the worker's database sessions to end")


def by_external_id(hub: GoogleHub, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    return {c["external_id"]: c for c in hub.contacts(browser, connection_id)}


def synced(hub: GoogleHub, contacts: int, user: str) -> tuple[str, httpx.Client, uuid.UUID]:
    account, browser = new_account(hub.admin, contacts=contacts), hub.browser(user=user)
    with worker(hub):
        connection_id = hub.connect(browser, account)
        assert hub.wait_run(browser, connection_id)["status"] == "succeeded"
    return account, browser, connection_id


def test_full_pass_over_unchanged_contacts_writes_no_row(hub: GoogleHub) -> None:
    account, browser, connection_id = synced(hub, 3 * PAGE_SIZE - 7, "unchanged")
    before, writes_before = by_external_id(hub, browser, connection_id), crm_writes(hub)
    hub.admin.expire_sync_tokens(account)

    with worker(hub):
        run = hub.sync_now(browser, connection_id)
    assert run["status"] == "succeeded" and run["full_sync"] is True
    assert run["counts"] == {"created": 0, "updated": 0, "deleted": 0}
    assert by_external_id(hub, browser, connection_id) == before, "a contact or its updated_at changed"
    assert set(written(writes_before, crm_writes(hub)).values()) == {(0, 0, 0)}


def test_full_pass_writes_exactly_what_changed_and_deletes_only_what_it_did_not_see(hub: GoogleHub) -> None:
    account, browser, connection_id = synced(hub, 3 * PAGE_SIZE, "changed")
    before, writes_before = by_external_id(hub, browser, connection_id), crm_writes(hub)
    changed, deleted = sorted(before)[7], sorted(before)[-3]
    hub.admin.update_contact(account, changed, {"names": [{"givenName": "Lise", "familyName": "Meitner"}]})
    hub.admin.delete_contact(account, deleted)
    added = hub.admin.add_contact(account, {"names": [{"givenName": "Emmy", "familyName": "Noether"}]})
    hub.admin.expire_sync_tokens(account)

    with worker(hub):
        run = hub.sync_now(browser, connection_id)
    assert run["status"] == "succeeded" and run["full_sync"] is True
    assert run["counts"] == {"created": 1, "updated": 1, "deleted": 1}
    after = by_external_id(hub, browser, connection_id)
    assert set(after) == set(before) - {deleted} | {added}
    assert (after[changed]["given_name"], after[changed]["family_name"]) == ("Lise", "Meitner")
    assert after[changed]["id"] == before[changed]["id"]
    assert after[changed]["updated_at"] > before[changed]["updated_at"]
    assert all(after[name] == before[name] for name in set(before) - {changed, deleted})
    writes = written(writes_before, crm_writes(hub))
    assert writes["crm_contacts"] == (1, 1, 1)
    assert writes["crm_contact_emails"][:2] == (0, 0), "a change of name rewrote the email index"


def committed(hub: GoogleHub, run_id: str) -> int:
    with hub.engine.connect() as db:
        query = text("select progress_done from sync_runs where id = :r")
        return int(db.execute(query, {"r": run_id}).scalar_one() or 0)


def test_full_pass_killed_midway_resumes_and_deletes_only_what_it_did_not_see(hub: GoogleHub) -> None:
    account, browser, connection_id = synced(hub, 12 * PAGE_SIZE, "killed")
    before = by_external_id(hub, browser, connection_id)
    deleted = sorted(before)[0]
    hub.admin.delete_contact(account, deleted)
    hub.admin.expire_sync_tokens(account)
    hub.admin.set_faults([{"path_prefix": "/v1/people", "status": None, "rate": 1.0, "latency_ms": 150}], seed=11)
    try:
        with worker(hub) as first:
            run_id = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/sync").json()["runs"]["contacts"]
            wait_for(lambda: committed(hub, run_id) > 4 * PAGE_SIZE, timeout=90, what="a checkpoint past page 4")
            assert first.process is not None
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait()
        assert 4 * PAGE_SIZE < committed(hub, run_id) < 12 * PAGE_SIZE, "the kill must land mid-pass"
        with worker(hub):
            run = hub.wait_run(browser, connection_id, run_id)
    finally:
        hub.admin.clear_faults()
    assert run["status"] == "succeeded" and run["full_sync"] is True
    assert run["counts"] == {"created": 0, "updated": 0, "deleted": 1}
    assert by_external_id(hub, browser, connection_id) == {k: v for k, v in before.items() if k != deleted}
