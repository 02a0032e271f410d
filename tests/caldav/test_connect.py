"""Connecting a CalDAV account with the form the auth provider declares: discovery before anything is stored, one
connection per account, each failure its own plain message, and a connection waiting for a new app password."""

from __future__ import annotations

import base64
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Connection
from oauth.providers.caldav import normalised
from sync import checkpoints
from sync.checkpoints import Position
from tests.caldav.hub import Hub, closed_port, hub_with, silent_server, web_page
from tests.caldav.servers import CalDAVServer
from tests.conftest import logs_captured
from tests.google.test_tokens import encodings, redis_text
from token_vault.vault import key_ring


@pytest.fixture(scope="module")
def caldav_hub(
    hub_env: dict[str, str], engine: Engine, sessions: sessionmaker[Session], jwt_secret: str
) -> Iterator[Hub]:
    """A hub that may reach CalDAV servers on loopback over http (as the tests and the dev hub do)."""
    yield from hub_with({**hub_env, "SYNCHUB_CALDAV__ALLOW_PRIVATE_HOSTS": "true"}, engine, sessions, jwt_secret)


@pytest.fixture(scope="module")
def impatient_hub(
    hub_env: dict[str, str], engine: Engine, sessions: sessionmaker[Session], jwt_secret: str
) -> Iterator[Hub]:
    env = {**hub_env, "SYNCHUB_CALDAV__ALLOW_PRIVATE_HOSTS": "true", "SYNCHUB_CALDAV__TIMEOUT_SECONDS": "0.5"}
    yield from hub_with(env, engine, sessions, jwt_secret)


def principal_of(server: CalDAVServer) -> str:
    with server.client() as client:
        return normalised(str(client.principal().url))


def connected_id(answer: Any) -> uuid.UUID:
    assert answer.status_code == 303, answer.text
    return uuid.UUID(answer.headers["location"].split("connected=")[1])


def new_user() -> str:
    return f"cal-{uuid.uuid4().hex[:8]}"


def test_the_form_is_the_providers_and_one_account_is_one_connection(
    caldav_hub: Hub, caldav_server: CalDAVServer
) -> None:
    user = new_user()
    browser = caldav_hub.browser(user)
    form = browser.get(f"{caldav_hub.url}/connect/caldav")
    assert form.status_code == 200 and "Connect a CalDAV calendar" in form.text
    for label in ("Server URL", "Username", "App password"):
        assert f">{label}</label>" in form.text
    assert 'type="password"' in form.text and "https://caldav.icloud.com/" in form.text
    preset = re.search(r'<a class="preset" href="([^"]+)">Fastmail</a>', form.text)
    assert preset, form.text
    filled = browser.get(caldav_hub.url + preset.group(1).replace("&amp;", "&"))
    assert 'value="https://caldav.fastmail.com/"' in filled.text

    principal = principal_of(caldav_server)
    first = connected_id(caldav_hub.submit(browser, caldav_server.url, caldav_server.username, caldav_server.password))
    row = caldav_hub.connection(first)
    assert (row.auth_provider, row.provider_account_id, row.status) == ("caldav", principal, "active")
    assert caldav_hub.secrets(first) == {"username": caldav_server.username, "password": caldav_server.password}
    page = browser.get(f"{caldav_hub.url}/")
    assert f'{caldav_server.username} <span class="muted">· CalDAV</span>' in page.text

    caldav_server.set_password(new := f"app-password-{uuid.uuid4().hex[:6]}")
    again = connected_id(caldav_hub.submit(browser, principal, caldav_server.username, new))
    by_api = caldav_hub.api_connect(browser, caldav_server.url + ".well-known/caldav", caldav_server.username, new)
    assert by_api.status_code == 200, by_api.text
    assert again == first and uuid.UUID(by_api.json()["connection_id"]) == first
    assert new not in by_api.text
    assert caldav_hub.secrets(first)["password"] == new
    with web_page(redirect=caldav_server.url) as (shop, hits):  # a web site whose well-known address points on
        assert connected_id(caldav_hub.submit(browser, shop, caldav_server.username, new)) == first
    assert "PROPFIND /.well-known/caldav" in hits
    assert caldav_hub.stored(user) == {"connections": 1, "credentials": 2, "audit": 4}


NOTHING = {"connections": 0, "credentials": 0, "audit": 0}


def refused(hub: Hub, user: str, url: str, username: str, password: str) -> tuple[str, str, dict[str, Any]]:
    """Connect through the page and through the API: the page's message, the API's answer; checks the page kept
    what was typed except the password."""
    browser = hub.browser(user)
    page = hub.submit(browser, url, username, password)
    assert page.status_code in (400, 504), page.text
    assert f'value="{username}"' in page.text and password not in page.text
    message = re.search(r'<p class="status-failed" role="alert" id="connect-error">([^<]+)</p>', page.text)
    assert message, page.text
    api = hub.api_connect(browser, url, username, password)
    assert api.status_code == page.status_code and password not in api.text
    return message.group(1).replace("&#39;", "'"), str(api.json()["reason"]), api.json()


def test_a_wrong_password_and_a_wrong_url_each_say_so_and_store_nothing(
    caldav_hub: Hub, caldav_server: CalDAVServer
) -> None:
    user = new_user()
    message, reason, _ = refused(caldav_hub, user, caldav_server.url, caldav_server.username, "not-the-password")
    assert reason == "wrong_password" and "refused this username and app password" in message
    message, reason, _ = refused(
        caldav_hub, user, caldav_server.url + "nobody/here/", caldav_server.username, caldav_server.password
    )
    assert reason == "not_found" and "check the server URL" in message, message
    assert caldav_hub.stored(user) == NOTHING


def test_no_server_nothing_listening_not_caldav_and_a_timeout_each_say_so_and_store_nothing(
    caldav_hub: Hub, impatient_hub: Hub
) -> None:
    user = new_user()
    message, reason, _ = refused(caldav_hub, user, "https://calendar.invalid/", "ada", "app-password")
    assert (reason, message) == ("unreachable", "No server called calendar.invalid was found: check the server URL.")
    message, reason, _ = refused(caldav_hub, user, closed_port(), "ada", "app-password")
    assert reason == "unreachable" and message.startswith("Nothing answers at 127.0.0.1:"), message
    with web_page() as (shop, hits):
        message, reason, _ = refused(caldav_hub, user, shop, "ada", "app-password")
    assert reason == "not_caldav" and "answered, but not as a CalDAV server" in message, message
    assert hits, "the web page was asked"
    with silent_server() as (silent, _):
        started = time.monotonic()
        message, reason, _ = refused(impatient_hub, user, silent, "ada", "app-password")
        took = (time.monotonic() - started) / 2  # the page's attempt and the API's
    assert reason == "timeout" and "did not answer within 0.5 seconds" in message, message
    assert took < 5, f"a 0.5 s timeout took {took:.1f} s"
    assert caldav_hub.stored(user) == NOTHING


def test_a_connection_waiting_for_a_new_app_password_resumes_when_it_is_entered(
    caldav_hub: Hub, caldav_server: CalDAVServer
) -> None:
    user = new_user()
    browser = caldav_hub.browser(user)
    connection_id = connected_id(
        caldav_hub.submit(browser, caldav_server.url, caldav_server.username, caldav_server.password)
    )
    before = caldav_hub.connection(connection_id)
    ring = key_ring(caldav_hub.settings.vault)
    where = {"sync_token": "http://example.test/ns/sync/42"}  # a calendar stream's place, as the engine keeps it
    with transaction(caldav_hub.sessions) as session:
        checkpoints.save(session, ring, session.get_one(Connection, connection_id), "calendar/c1", Position(where))
    old = caldav_server.password
    caldav_server.set_password(new := f"app-password-{uuid.uuid4().hex[:6]}")
    # What the sync engine does when the server answers 401 (the connector raises AuthRevoked).
    caldav_hub.app.state.sync_engine.needs_reauth(connection_id, "the server refused the app password")

    page = browser.get(f"{caldav_hub.url}/").text
    assert "enter your new app password" in page
    assert f'href="/connect/caldav?reconnect={connection_id}"' in page
    form = browser.get(f"{caldav_hub.url}/connect/caldav", params={"reconnect": str(connection_id)})
    assert "enter your new app password" in form.text
    assert f'value="{before.provider_account_id}"' in form.text and f'value="{caldav_server.username}"' in form.text

    stale = caldav_hub.submit(
        browser, before.provider_account_id, caldav_server.username, old, reconnect=str(connection_id)
    )
    assert stale.status_code == 400 and "refused this username and app password" in stale.text
    assert caldav_hub.connection(connection_id).status == "needs_reauth"
    assert caldav_hub.secrets(connection_id)["password"] == old

    elsewhere = caldav_server.url.replace("127.0.0.1", "localhost")  # another principal URL: another account
    other = caldav_hub.submit(browser, elsewhere, caldav_server.username, new, reconnect=str(connection_id))
    assert other.status_code == 409 and "another CalDAV account" in other.text, other.text
    assert caldav_hub.connection(connection_id).status == "needs_reauth" and caldav_hub.stored(user)["connections"] == 1

    resumed = caldav_hub.submit(browser, caldav_server.url, caldav_server.username, new, reconnect=str(connection_id))
    assert connected_id(resumed) == connection_id
    after = caldav_hub.connection(connection_id)
    assert (after.status, after.status_reason, after.created_at) == ("active", None, before.created_at)
    assert caldav_hub.secrets(connection_id)["password"] == new
    assert caldav_hub.stored(user)["credentials"] == 2
    with caldav_hub.sessions() as session:  # the next sync resumes where it was, incrementally
        kept = checkpoints.load(session, ring, session.get_one(Connection, connection_id), "calendar/c1")
    assert kept.cursor == where and not kept.in_full_pass

    gone = browser.delete(f"{caldav_hub.url}/api/v1/connections/{connection_id}")
    assert gone.status_code == 200 and gone.json()["revoked_at_provider"] is True, gone.text  # nothing to revoke
    assert caldav_hub.stored(user)["credentials"] == 0
    back = caldav_hub.api_connect(browser, caldav_server.url, caldav_server.username, new)
    assert back.json()["connection_id"] == str(connection_id) and caldav_hub.secrets(connection_id)["password"] == new


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    """Every log record of this process (the hub runs in it) while the test runs, with its extra fields."""
    with logs_captured() as lines:
        yield lines


def test_no_app_password_in_the_database_redis_logs_or_any_response(
    caldav_hub: Hub, caldav_server: CalDAVServer, captured_logs: list[str]
) -> None:
    user = new_user()
    browser = caldav_hub.browser(user)
    caldav_server.set_password(password := f"app-pw-{uuid.uuid4().hex}")
    wrong = f"wrong-pw-{uuid.uuid4().hex}"
    assert caldav_hub.submit(browser, caldav_server.url, caldav_server.username, wrong).status_code == 400
    connection_id = connected_id(caldav_hub.submit(browser, caldav_server.url, caldav_server.username, password))
    assert caldav_hub.api_connect(browser, caldav_server.url, caldav_server.username, password).status_code == 200
    assert caldav_hub.api_connect(browser, caldav_server.url, caldav_server.username, wrong).status_code == 400
    browser.get(f"{caldav_hub.url}/")
    browser.get(f"{caldav_hub.url}/api/v1/connections/{connection_id}")
    browser.get(f"{caldav_hub.url}/connect/caldav", params={"reconnect": str(connection_id)})
    assert caldav_hub.secrets(connection_id)["password"] == password, "sanity: it is stored, sealed"

    url = make_url(caldav_hub.settings.database_url).set(drivername="postgresql")
    dump = subprocess.run(
        ["pg_dump", "--data-only", url.render_as_string(hide_password=False)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    places = {
        "pg_dump": dump,
        "redis": redis_text(redis.Redis.from_url(caldav_hub.settings.redis_url)),
        "logs": "\n".join(captured_logs),
        "responses": "\n".join(f"{r.status_code} {dict(r.headers)} {r.text}" for r in caldav_hub.responses),
    }
    assert str(connection_id) in dump and "connected by form" in places["logs"], "the scan must see what it scans"
    assert "connect by form refused" in places["logs"]
    forms = {
        (secret[:12], form)
        for secret in (password, wrong)
        for form in {*encodings(secret), base64.b64encode(f"{caldav_server.username}:{secret}".encode()).decode()}
    }
    leaks = [(where, name) for name, form in forms for where, text in places.items() if form in text]
    assert leaks == []
