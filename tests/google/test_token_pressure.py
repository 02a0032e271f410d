"""Tokens under pressure: many concurrent refreshers, a dead lock holder, revocation, reconnect, narrowed scopes and
against the sandbox Google with a real worker."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import update

from core.db import transaction
from core.errors import Retryable
from core.models import Connection, utcnow
from sync.models import Schedule
from tests import signin
from tests.google import procs
from tests.google.conftest import CONTACTS_SCOPE, GoogleHub, new_account
from tests.google.test_tokens import expire_stored_access_token
from tests.sandbox.browser import authorize
from token_vault.fresh import ACCESS, LOCK_PREFIX
from token_vault.vault import Vault, key_ring

BEAT_SECONDS = 1


def stored_access(hub: GoogleHub, connection_id: uuid.UUID) -> str:
    with hub.sessions() as session:
        secret = Vault(key_ring(hub.settings.vault)).read(session, session.get_one(Connection, connection_id), ACCESS)
    assert secret is not None
    return secret.value


def accepted(hub: GoogleHub, token: str) -> bool:
    people = httpx.get(
        f"{hub.admin.base_url}/v1/people/me/connections",
        params={"personFields": "names"},
        headers={"authorization": f"Bearer {token}"},
    )
    return people.status_code == 200


def token_calls(hub: GoogleHub, mark: int, account: str | None = None) -> list[dict[str, Any]]:
    return [dict(e) for e in hub.admin.request_log(mark) if e["path"] == "/token" and account in (None, e["account"])]


def make_due(hub: GoogleHub, connection_id: uuid.UUID) -> None:
    with transaction(hub.sessions) as session:
        session.execute(
            update(Schedule)
            .where(Schedule.connection_id == connection_id)
            .values(next_run_at=utcnow() - timedelta(seconds=1))
        )


def connected(hub: GoogleHub, browser: httpx.Client, contacts: int = 5) -> tuple[str, uuid.UUID]:
    account = new_account(hub.admin, contacts=contacts)
    connection_id = hub.connect(browser, account)
    assert hub.wait_run(browser, connection_id)["status"] == "succeeded"
    return account, connection_id


def test_200_gets_from_8_processes_share_one_refresh(google_hub: GoogleHub) -> None:
    browser = google_hub.browser(user="crowd")
    account, connection_id = connected(google_hub, browser)
    old = expire_stored_access_token(google_hub, connection_id)
    google_hub.admin.expire_access_tokens(account=account, client_id=google_hub.client_id)
    google_hub.admin.set_faults([{"path_prefix": "/token", "status": None, "rate": 1.0, "latency_ms": 300}])
    mark = google_hub.log_mark()
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(8), spawn.Queue()
    children = [
        spawn.Process(target=procs.hammer, args=(google_hub.env, str(connection_id), 25, start, results))
        for _ in range(8)
    ]
    try:
        for child in children:
            child.start()
        outcomes = [item for _ in children for item in results.get(timeout=120)]
    finally:
        google_hub.admin.clear_faults()
        for child in children:
            child.join(timeout=30)
    errors = [value for kind, value in outcomes if kind == "error"]
    tokens = {value for kind, value in outcomes if kind == "token"}
    assert errors == []
    assert len(outcomes) == 200
    assert len(token_calls(google_hub, mark)) == 1, "exactly one refresh reached the token endpoint"
    assert len(tokens) == 1 and old not in tokens
    assert accepted(google_hub, tokens.pop())


def test_a_killed_lock_holder_delays_others_until_the_ttl_and_none_returns_a_stale_token(
    google_hub: GoogleHub,
) -> None:
    browser = google_hub.browser(user="holder")
    account, connection_id = connected(google_hub, browser)
    old = expire_stored_access_token(google_hub, connection_id)
    google_hub.admin.expire_access_tokens(account=account, client_id=google_hub.client_id)
    lock_ttl = 4.0
    spawn = multiprocessing.get_context("spawn")
    holding = spawn.Event()
    holder = spawn.Process(target=procs.hold_refresh_lock, args=(google_hub.env, str(connection_id), lock_ttl, holding))
    holder.start()
    assert holding.wait(timeout=60), "the holder never took the lock"
    holder.kill()
    holder.join(timeout=10)
    client = redis.Redis.from_url(google_hub.settings.redis_url)
    lock_left = client.pttl(LOCK_PREFIX + str(connection_id)) / 1000
    lock_expires_at = time.time() + lock_left
    assert lock_left > 0, "the dead holder's lock is still there"
    mark = google_hub.log_mark()

    fresh = procs.fresh_tokens(google_hub.env, lock_ttl)
    with ThreadPoolExecutor(max_workers=10) as pool:
        tokens = set(pool.map(lambda _: fresh.get(connection_id), range(10)))
    refreshes = token_calls(google_hub, mark)
    assert len(refreshes) == 1
    assert refreshes[0]["time"] >= lock_expires_at - 0.25, "nobody refreshed while the dead holder's lock stood"
    assert len(tokens) == 1 and old not in tokens
    assert accepted(google_hub, tokens.pop())


def test_a_narrowed_scope_shows_grant_access_and_is_not_retried(google_hub: GoogleHub) -> None:
    browser = google_hub.browser(user="narrowed")
    account, connection_id = connected(google_hub, browser)
    assert google_hub.admin.narrow_grant(account, google_hub.client_id, [CONTACTS_SCOPE]) >= 1
    mark = google_hub.log_mark()
    run = google_hub.sync_now(browser, connection_id)
    assert run["status"] == "failed" and "grant access" in run["error"]
    people = google_hub.people_calls(account, mark)
    assert [e["status"] for e in people] == [403], "one refused call, never retried"
    view = google_hub.connection(browser, connection_id)
    assert view["status"] == "active"
    assert view["capabilities"][0]["state"] == "grant_access"
    assert CONTACTS_SCOPE not in view["granted_scopes"]
    page = browser.get(f"{google_hub.url}/").text
    assert "Grant access" in page
    refused = browser.post(f"{google_hub.url}/api/v1/connections/{connection_id}/sync").json()
    assert refused["runs"] == {"contacts": None}
    assert google_hub.people_calls(account, mark) == people, "a capability without its scope is never attempted"
    assert len(google_hub.contacts(browser, connection_id)) == 5


def test_reconnecting_as_another_account_changes_nothing_and_says_who_is_signed_in(google_hub: GoogleHub) -> None:
    browser = google_hub.browser(user="switcher")
    account, connection_id = connected(google_hub, browser)
    stranger = new_account(google_hub.admin, contacts=3)
    token_before = stored_access(google_hub, connection_id)
    start = signin.start_connect(browser, google_hub.url, reconnect=str(connection_id))
    back = authorize(browser, start.headers["location"], account=stranger)
    refused = browser.get(back.headers["location"])
    assert refused.status_code == 409
    assert f"signed in to Google as {stranger}" in refused.text and account in refused.text
    view = google_hub.connection(browser, connection_id)
    assert view["account_email"] == account and view["status"] == "active"
    assert stored_access(google_hub, connection_id) == token_before
    listed = browser.get(f"{google_hub.url}/api/v1/connections").json()["connections"]
    assert [c["account_email"] for c in listed] == [account]
    other = browser.get(f"{google_hub.url}/connect/google", params={"reconnect": str(uuid.uuid4())})
    assert other.status_code == 404


def test_a_refused_oauth_client_is_a_settings_problem_not_a_revoked_grant(google_hub: GoogleHub) -> None:
    browser = google_hub.browser(user="wrong-secret")
    _account, connection_id = connected(google_hub, browser)
    expire_stored_access_token(google_hub, connection_id)
    misconfigured = procs.fresh_tokens({**google_hub.env, "SYNCHUB_GOOGLE__CLIENT_SECRET": "not-the-secret"})
    with pytest.raises(Retryable, match="refused this hub's OAuth client"):
        misconfigured.get(connection_id)
    view = google_hub.connection(browser, connection_id)
    assert view["status"] == "active", "every connection would otherwise need reconnecting after a bad deploy"
    assert accepted(google_hub, procs.fresh_tokens(google_hub.env).get(connection_id))
