"""Connecting a CalDAV account with the form the auth provider declares: discovery before anything is stored, one
connection per account, each failure its own plain message, and a connection waiting for a new app password."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from oauth.providers.caldav import normalised
from tests.caldav.hub import Hub, hub_with
from tests.caldav.servers import CalDAVServer


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
    env = {**hub_env, "SYNCHUB_CALDAV__ALLOW_PRIVATE_HOSTS": "true", "SYNCHUB_CALDAV__TIMEOUT_SECONDS": "1"}
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
    assert caldav_hub.stored(user) == {"connections": 1, "credentials": 2, "audit": 3}
