"""Tokens and beat: a revoked grant goes silent through beat periods and reconnects in place; the background
refresh renews expiring tokens and cools down through a token endpoint outage. Real worker, real beat.

Kept apart from the other token tests so no second hub's worker (another OAuth client) consumes this beat's tasks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text, update

from core.db import transaction
from core.models import Connection, utcnow
from tests import signin
from tests.conftest import Beat, Worker, wait_for
from tests.google.conftest import GoogleHub
from tests.google.test_token_pressure import (
    accepted,
    connected,
    make_due,
    stored_access,
    token_calls,
)
from tests.google.test_tokens import connect_long_lived, expire_stored_access_token
from tests.sandbox.browser import authorize
from token_vault.fresh import ACCESS
from token_vault.vault import Vault, key_ring

BEAT_SECONDS = 1


@pytest.fixture(scope="module")
def beat_hub(google_hub_factory: Callable[..., GoogleHub]) -> Iterator[GoogleHub]:
    """A hub whose beat ticks every second: schedules, watchdog and background refresh."""
    hub = google_hub_factory(
        SYNCHUB_SCHEDULE__TICK_SECONDS=str(BEAT_SECONDS),
        SYNCHUB_VAULT__REFRESH_TICK_SECONDS=str(BEAT_SECONDS),
        SYNCHUB_VAULT__REFRESH_COOLDOWN_SECONDS="1",
        SYNCHUB_VAULT__REFRESH_COOLDOWN_MAX_SECONDS="2",
        SYNCHUB_VAULT__REFRESH_LOCK_SECONDS="5",
    )
    worker = Worker(hub.env, queues="sync,maintenance", concurrency=2).start()
    beat = Beat(hub.env).start()
    yield hub
    beat.stop()
    worker.stop()


def finished_scheduled_runs(hub: GoogleHub, connection_id: uuid.UUID) -> int:
    with hub.sessions() as session:
        count: int = session.execute(
            text(
                "select count(*) from sync_runs where connection_id = :c and trigger = 'schedule' "
                "and status in ('succeeded', 'failed', 'cancelled')"
            ),
            {"c": connection_id},
        ).scalar_one()
    return count


def test_revoked_grant_stays_silent_through_beat_and_reconnect_resumes_in_place(beat_hub: GoogleHub) -> None:
    hub = beat_hub
    browser = hub.browser(user="revoked-beat")
    account, connection_id = connected(hub, browser, contacts=7)
    witness_account, witness = connected(hub, browser, contacts=2)
    hub.admin.revoke_grant(account, hub.client_id)
    mark = hub.log_mark()
    expire_stored_access_token(hub, connection_id)
    make_due(hub, connection_id)

    view = wait_for(
        lambda: (v := hub.connection(browser, connection_id))["status"] == "needs_reauth" and v,
        timeout=60,
        what="needs_reauth",
    )
    assert "Reconnect" in view["status_reason"] and "revoked" in view["status_reason"]
    assert len(token_calls(hub, mark, account)) == 1, "one refused refresh, then no more attempts"
    assert hub.people_calls(account, mark) == []

    silent_from = hub.log_mark()
    make_due(hub, connection_id)
    for period in (1, 2):
        before = finished_scheduled_runs(hub, witness)
        make_due(hub, witness)
        wait_for(lambda b=before: finished_scheduled_runs(hub, witness) > b, timeout=30, what=f"beat period {period}")
    heard = [e for e in hub.admin.request_log(silent_from) if e["account"] in (account, None)]
    assert heard == [], "no call for the revoked account through two beat periods"
    assert hub.people_calls(witness_account, silent_from), "the witness shows beat was working meanwhile"
    page = browser.get(f"{hub.url}/").text
    assert f"?reconnect={connection_id}" in page

    start = signin.start_connect(browser, hub.url, reconnect=str(connection_id))
    assert start.status_code == 303
    back = authorize(browser, start.headers["location"], account=account)
    done = browser.get(back.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == f"/?connected={connection_id}"
    reconnect_mark = hub.log_mark()
    assert hub.connection(browser, connection_id)["status"] == "active"
    run = hub.wait_run(browser, connection_id)
    # The schedule made due above may start the run before the reconnect's own request does, which then joins it.
    assert run["status"] == "succeeded" and run["full_sync"] is False, run
    assert run["trigger"] in ("connect", "schedule"), run
    calls = hub.people_calls(account, reconnect_mark)
    assert calls and all("syncToken=" in e["query"] for e in calls), "the sync resumed incrementally"
    assert len(hub.contacts(browser, connection_id)) == 7
    listed = browser.get(f"{hub.url}/api/v1/connections").json()["connections"]
    assert sorted(c["id"] for c in listed) == sorted([str(connection_id), str(witness)])


def refresh_state(hub: GoogleHub, connection_id: uuid.UUID) -> tuple[int, Any, Any, str]:
    with hub.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        return connection.refresh_failures, connection.refresh_retry_at, connection.refreshed_at, connection.status


def test_background_refresh_renews_expiring_tokens_and_cools_down_on_an_outage(beat_hub: GoogleHub) -> None:
    hub = beat_hub
    browser = hub.browser(user="background")
    _account, connection_id = connected(hub, browser)
    old = stored_access(hub, connection_id)
    hub.admin.set_faults([{"path_prefix": "/token", "status": 503, "rate": 1.0}])
    try:
        mark = hub.log_mark()
        expire_stored_access_token(hub, connection_id)
        failing = wait_for(
            lambda: (s := refresh_state(hub, connection_id))[0] >= 2 and s, timeout=60, what="two failed refreshes"
        )
        assert failing[3] == "active", "an outage never breaks the connection"
        assert failing[1] is not None and failing[1] > utcnow() - timedelta(seconds=5)
        attempts = len(token_calls(hub, mark))
        assert 2 <= attempts <= failing[0] + 1, "each failure waited for its cool-down"
    finally:
        hub.admin.clear_faults()
    cleared_at = utcnow()
    renewed = wait_for(
        lambda: (s := refresh_state(hub, connection_id))[0] == 0 and s[2] is not None and s[2] > cleared_at and s,
        timeout=60,
        what="a successful background refresh",
    )
    assert renewed[1] is None and renewed[3] == "active"
    token = stored_access(hub, connection_id)
    assert token != old and accepted(hub, token)
    assert hub.connection(browser, connection_id)["status"] == "active"


def refreshed_at(hub: GoogleHub, connection_id: uuid.UUID) -> Any:
    with hub.sessions() as session:
        return session.get_one(Connection, connection_id).refreshed_at


def keeper_ticked(hub: GoogleHub, browser: Any, ticks: int = 3) -> None:
    """Wait until the background refresh has renewed a witness connection's expiring token `ticks` times: each
    renewal is a whole tick of the keeper, done after the one before."""
    _account, witness = connected(hub, browser, contacts=1)
    for tick in range(ticks):
        before = refreshed_at(hub, witness)
        expire_stored_access_token(hub, witness)
        wait_for(lambda b=before: refreshed_at(hub, witness) > b, timeout=30, what=f"the keeper's renewal {tick + 1}")


def test_the_keeper_never_refreshes_a_credential_without_expiry(beat_hub: GoogleHub) -> None:
    hub = beat_hub
    browser = hub.browser(user="no-expiry")
    account, connection_id = connected(hub, browser)
    token = stored_access(hub, connection_id)
    with transaction(hub.sessions) as session:
        connection = session.get_one(Connection, connection_id)
        Vault(key_ring(hub.settings.vault)).store(session, connection, ACCESS, token, None)
        session.execute(update(Connection).where(Connection.id == connection_id).values(refreshed_at=None))
    mark = hub.log_mark()
    keeper_ticked(hub, browser)
    assert hub.sync_now(browser, connection_id)["status"] == "succeeded"
    assert token_calls(hub, mark, account) == [], "a token without an expiry is never stale"
    assert stored_access(hub, connection_id) == token


def test_the_keeper_marks_an_expired_grant_without_refresh_token_for_reconnecting_without_a_call(
    beat_hub: GoogleHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = beat_hub
    browser = hub.browser(user="long-lived-beat")
    account, connection_id = connect_long_lived(hub, browser, monkeypatch)
    assert hub.wait_run(browser, connection_id)["status"] == "succeeded"
    mark = hub.log_mark()
    keeper_ticked(hub, browser)
    assert token_calls(hub, mark, account) == [], "60 days ahead: nothing to do"
    assert hub.connection(browser, connection_id)["status"] == "active"

    expire_stored_access_token(hub, connection_id)
    view = wait_for(
        lambda: (v := hub.connection(browser, connection_id))["status"] == "needs_reauth" and v,
        timeout=30,
        what="needs_reauth",
    )
    assert "expired" in view["status_reason"] and "Reconnect" in view["status_reason"]
    with hub.sessions() as session:
        causes = session.scalars(
            text(
                "select detail->>'cause' from audit_log where connection_id = :c and action = 'connection.needs_reauth'"
            ),
            {"c": connection_id},
        ).all()
    assert causes == ["access_expired"], "marked by the keeper, not by a sync run"
    assert token_calls(hub, mark, account) == [] and hub.people_calls(account, mark) == []
