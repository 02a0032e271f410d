"""Fresh tokens under concurrency, and no provider-issued secret anywhere it could leak."""

from __future__ import annotations

import base64
import logging
import subprocess
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import redis
from sqlalchemy.engine import make_url

from core.db import transaction
from core.models import Connection, utcnow
from sync.checkpoints import load
from tests.conftest import Worker
from tests.google import truth
from tests.google.conftest import GoogleHub, new_account
from token_vault.fresh import ACCESS
from token_vault.vault import Vault, key_ring


@pytest.fixture(scope="module")
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name.startswith(("httpx", "httpcore")) and record.threadName == "MainThread":
                return  # the test's own browser; the hub's API runs on the server's threads
            lines.append(f"{record.getMessage()} {record.__dict__!r}")

    handler, root = Keep(logging.DEBUG), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(previous)


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
    import uuid

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
