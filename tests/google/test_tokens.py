"""Fresh tokens under concurrency, and no provider-issued secret anywhere it could leak."""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import redis
from sqlalchemy.engine import make_url

from core.db import transaction
from core.models import Connection, utcnow
from oauth.providers import PROVIDERS
from oauth.providers.google import GOOGLE
from sync.checkpoints import load
from tests.conftest import Worker, logs_captured
from tests.google import truth
from tests.google.conftest import GoogleHub, new_account
from token_vault.fresh import ACCESS, REFRESH
from token_vault.vault import Vault, key_ring


def _the_tests_own_browser(record: logging.LogRecord) -> bool:
    """The test's own HTTP client logs on the main thread; the hub's API runs on the server's threads."""
    return record.name.startswith(("httpx", "httpcore")) and record.threadName == "MainThread"


@pytest.fixture(scope="module")
def captured_logs() -> Iterator[list[str]]:
    with logs_captured(skip=_the_tests_own_browser) as lines:
        yield lines


def expire_stored_access_token(hub: GoogleHub, connection_id: object) -> str:
    vault = Vault(key_ring(hub.settings.vault))
    with transaction(hub.sessions) as session:
        connection = session.get_one(Connection, connection_id)
        secret = vault.read(session, connection, ACCESS)
        assert secret is not None
        vault.store(session, connection, ACCESS, secret.value, utcnow() - timedelta(seconds=1))
    return secret.value


def _redis(hub: GoogleHub) -> redis.Redis:
    return redis.Redis.from_url(hub.settings.redis_url)


def encodings(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
    }


def redis_text(client: redis.Redis) -> str:
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"list":
            parts.extend(client.lrange(key, 0, -1))
        elif kind == b"hash":
            parts.extend(b for pair in client.hgetall(key).items() for b in pair)
        elif kind == b"set":
            parts.extend(client.smembers(key))
        elif kind == b"zset":
            parts.extend(client.zrange(key, 0, -1))
    return b"\n".join(parts).decode("latin-1")


def test_no_issued_secret_in_database_redis_logs_or_api(google_hub: GoogleHub, captured_logs: list[str]) -> None:
    admin = google_hub.admin
    account = new_account(admin, contacts=60)
    browser = google_hub.browser(user="auditor")
    back = google_hub.consent(browser, account)
    code = dict(p.split("=", 1) for p in back.headers["location"].split("?", 1)[1].split("&"))["code"]
    connection_id = uuid_of(browser.get(back.headers["location"]))
    google_hub.wait_run(browser, connection_id)
    expire_stored_access_token(google_hub, connection_id)
    google_hub.sync_now(browser, connection_id)
    browser.get(f"{google_hub.url}/")
    google_hub.contacts(browser, connection_id)

    with google_hub.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        sync_token = load(session, key_ring(google_hub.settings.vault), connection, "contacts").cursor["sync_token"]
    issued = [t["value"] for t in admin.tokens(client_id=google_hub.client_id)]
    secrets = {*issued, code, sync_token, google_hub.client_secret}
    assert len(issued) >= 3, "expected access, refresh and refreshed access tokens"

    url = make_url(google_hub.settings.database_url).set(drivername="postgresql")
    dump = subprocess.run(
        ["pg_dump", "--data-only", url.render_as_string(hide_password=False)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "crm_contacts" in dump
    worker_logs = "\n".join(p.read_text(errors="replace") for p in sorted(Worker.log_dir.glob("*.log")))
    api_responses = "\n".join(
        f"{r.status_code} {dict(r.headers)} {r.text}"
        for r in google_hub.responses
        if str(r.url).startswith(google_hub.url)
    )
    places = {
        "pg_dump": dump,
        "redis": redis_text(_redis(google_hub)),
        "logs": "\n".join(captured_logs) + worker_logs,
        "api responses": api_responses,
    }
    assert "token refreshed" in places["logs"], "the scan must see the hub's own log lines"
    leaks = [
        (where, secret[:6])
        for secret in secrets
        for form in encodings(secret)
        for where, body in places.items()
        if form in body
    ]
    assert leaks == []
    assert truth.people(admin, account, google_hub.client_id), "sanity: the account has contacts"


def uuid_of(response: httpx.Response) -> object:
    assert response.status_code == 303, response.text
    return uuid.UUID(response.headers["location"].split("connected=")[1])


def test_a_401_refreshes_once_and_retries(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=5)
    browser = google_hub.browser(user="expired")
    connection_id = google_hub.connect(browser, account)
    google_hub.wait_run(browser, connection_id)
    google_hub.admin.expire_access_tokens(account=account, client_id=google_hub.client_id)
    mark = google_hub.log_mark()
    run = google_hub.sync_now(browser, connection_id)
    assert run["status"] == "succeeded"
    log = google_hub.admin.request_log(mark)
    assert [e["status"] for e in log if e["path"].startswith("/v1/people")] == [401, 200]
    assert len([e for e in log if e["path"] == "/token"]) == 1


def test_revoked_grant_needs_reauth_and_stops_calling(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=5)
    browser = google_hub.browser(user="revoked")
    connection_id = google_hub.connect(browser, account)
    google_hub.wait_run(browser, connection_id)
    google_hub.admin.revoke_grant(account, google_hub.client_id)
    mark = google_hub.log_mark()
    run = google_hub.sync_now(browser, connection_id)
    assert run["status"] == "failed" and "reconnect" in run["error"]
    view = google_hub.connection(browser, connection_id)
    assert view["status"] == "needs_reauth" and view["capabilities"][0]["state"] == "needs_reauth"
    assert "Reconnect" in browser.get(f"{google_hub.url}/").text
    calls = len(google_hub.admin.request_log(mark))
    refused = browser.post(f"{google_hub.url}/api/v1/connections/{connection_id}/sync").json()
    assert refused["runs"] == {"contacts": None}
    assert len(google_hub.admin.request_log(mark)) == calls
    assert len(google_hub.contacts(browser, connection_id)) == 5, "contacts stay until the user disconnects"


def test_no_refresh_token_refuses_a_new_connection_and_never_blanks_a_stored_one(google_hub: GoogleHub) -> None:
    admin = google_hub.admin
    known, stranger = new_account(admin, contacts=4), new_account(admin, contacts=4)
    browser = google_hub.browser(user="offline")
    connection_id = google_hub.connect(browser, known)
    google_hub.wait_run(browser, connection_id)
    with google_hub.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        stored = Vault(key_ring(google_hub.settings.vault)).read(session, connection, "refresh_token")
    assert stored is not None

    admin.google_settings(withhold_refresh_tokens=True)
    try:
        back = google_hub.consent(browser, stranger)
        refused = browser.get(back.headers["location"])
        assert google_hub.connect(browser, known) == connection_id
    finally:
        admin.google_settings(withhold_refresh_tokens=False)
    assert refused.status_code == 400 and "no refresh token" in refused.text
    listed = browser.get(f"{google_hub.url}/api/v1/connections").json()["connections"]
    assert [c["account_email"] for c in listed] == [known]

    with google_hub.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        kept = Vault(key_ring(google_hub.settings.vault)).read(session, connection, "refresh_token")
    assert kept is not None and kept.value == stored.value
    expire_stored_access_token(google_hub, connection_id)
    assert google_hub.sync_now(browser, connection_id)["status"] == "succeeded"


LONG_LIVED = timedelta(days=60)


def connect_long_lived(
    hub: GoogleHub, browser: httpx.Client, monkeypatch: pytest.MonkeyPatch, contacts: int = 5
) -> tuple[str, uuid.UUID]:
    """Connect through a provider config, defined here, that says its grants carry no refresh token (as Meta's
    long-lived user tokens); the sandbox answers the exchange with none and a 60-day access token."""
    monkeypatch.setitem(PROVIDERS, "google", replace(GOOGLE, issues_refresh_tokens=False))
    account = new_account(hub.admin, contacts=contacts)
    before = hub.admin.google_settings()
    hub.admin.google_settings(withhold_refresh_tokens=True, access_token_lifetime=LONG_LIVED.total_seconds())
    try:
        back = hub.consent(browser, account)
        done = browser.get(back.headers["location"])
    finally:
        hub.admin.google_settings(
            withhold_refresh_tokens=before["withhold_refresh_tokens"],
            access_token_lifetime=before["access_token_lifetime"],
        )
    assert done.status_code == 303, done.text
    connection_id = uuid.UUID(done.headers["location"].split("connected=")[1])
    with hub.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        vault = Vault(key_ring(hub.settings.vault))
        access, refresh = vault.read(session, connection, ACCESS), vault.read(session, connection, REFRESH)
    assert refresh is None and access is not None and access.expires_at is not None
    assert access.expires_at > utcnow() + LONG_LIVED - timedelta(minutes=5)
    return account, connection_id


def token_endpoint_calls(hub: GoogleHub, mark: int) -> list[dict[str, object]]:
    return [dict(e) for e in hub.admin.request_log(mark) if e["path"] == "/token"]


@pytest.mark.parametrize("ending", ["expired", "refused"])
def test_a_grant_without_refresh_token_serves_until_it_ends_then_needs_reconnecting_without_a_refresh(
    google_hub: GoogleHub, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    hub = google_hub
    browser = hub.browser(user=f"long-lived-{ending}")
    account, connection_id = connect_long_lived(hub, browser, monkeypatch, contacts=6)
    assert hub.wait_run(browser, connection_id)["status"] == "succeeded"
    hub.admin.add_contact(account, {"names": [{"givenName": "Rosalind", "familyName": "Franklin"}]})
    mark = hub.log_mark()
    run = hub.sync_now(browser, connection_id)
    assert run["status"] == "succeeded" and run["counts"]["created"] == 1
    assert len(hub.contacts(browser, connection_id)) == 7

    if ending == "expired":
        expire_stored_access_token(hub, connection_id)
        hub.admin.expire_access_tokens(account=account, client_id=hub.client_id)
    else:
        hub.admin.revoke_grant(account, hub.client_id)
    run = hub.sync_now(browser, connection_id)
    assert run["status"] == "failed" and run["error"].startswith("reconnect needed"), run
    view = hub.connection(browser, connection_id)
    assert view["status"] == "needs_reauth" and "Reconnect" in view["status_reason"]
    assert ("expired" in view["status_reason"]) == (ending == "expired"), view["status_reason"]
    assert token_endpoint_calls(hub, mark) == [], "no refresh is tried without a refresh token"
    statuses = [e["status"] for e in hub.people_calls(account, mark)]
    assert statuses == ([200] if ending == "expired" else [200, 401]), "the expired token was never sent"
