"""Sign-in and cross-site requests: each attack on the browser's sign-in, made for real over HTTP, is refused."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.identity import SIGNIN_AUDIENCE, issue_token
from core.models import Connection
from hub.app import create_app
from oauth.state import PREFIX as STATE_PREFIX
from sync.models import SyncRun
from tests import signin
from tests.conftest import LiveServer, free_port, settings_from_env, wait_for

CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"
GOOGLE = {
    "SYNCHUB_CONNECTORS": "google_contacts",
    "SYNCHUB_GOOGLE__CLIENT_ID": "signin",
    "SYNCHUB_GOOGLE__CLIENT_SECRET": "signin-secret",
    "SYNCHUB_GOOGLE__BASE_URL": "http://127.0.0.1:9",
}
HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def start_hub(hub_env: dict[str, str], engine: Engine) -> Iterator[Callable[..., str]]:
    """A hub whose public URL is where it listens, so its own page's `Origin` is the one it expects."""
    servers: list[LiveServer] = []

    def start(**overrides: str) -> str:
        port = free_port()
        env = {**hub_env, **GOOGLE, "SYNCHUB_PUBLIC_URL": f"http://127.0.0.1:{port}", **overrides}
        servers.append(LiveServer(create_app(settings_from_env(env), engine), port=port).__enter__())
        return servers[-1].url

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def hub(start_hub: Callable[..., str]) -> str:
    return start_hub()


def new_connection(sessions: sessionmaker[Session], workspace: str, user: str) -> uuid.UUID:
    with transaction(sessions) as session:
        connection = Connection(
            workspace_id=workspace,
            user_id=user,
            auth_provider="google",
            provider_account_id=uuid.uuid4().hex,
            granted_scopes=[CONTACTS],
            capabilities=["contacts"],
        )
        session.add(connection)
        session.flush()
        return connection.id


def state_of(sessions: sessionmaker[Session], connection_id: uuid.UUID) -> tuple[str, int]:
    """The connection's status and how many runs it has: what a forged request would change."""
    with sessions() as session:
        status = session.get_one(Connection, connection_id).status
        runs = session.scalar(select(func.count()).where(SyncRun.connection_id == connection_id)) or 0
    return status, runs


def who(client: httpx.Client, hub: str) -> str:
    """Whom the browser's session names, as the settings page says it."""
    page = client.get(f"{hub}/", headers=HTML, follow_redirects=False)
    assert page.status_code == 200, page.text
    return page.text.split("Signed in as ")[1].split(".")[0]


def signed_in_client(hub: str, jwt_secret: str, user: str, workspace: str) -> tuple[httpx.Client, str]:
    """A plain browser (no helper headers) with a session, and the session's CSRF token."""
    client = httpx.Client(timeout=30)
    return client, signin.sign_in(client, hub, jwt_secret, user, workspace)


def signin_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "u-1", "workspace_id": "ws-1", "aud": SIGNIN_AUDIENCE, "iat": now, "exp": now + 60}
    claims["jti"] = uuid.uuid4().hex
    changes = dict(changes)
    if "iat_in" in changes:
        changes["iat"] = now + changes.pop("iat_in")
    if "exp_in" in changes:
        changes["exp"] = now + changes.pop("exp_in")
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def test_a_sign_in_link_works_once(hub: str, jwt_secret: str) -> None:
    link = signin.signin_link(hub, jwt_secret, "once", "ws-once")
    first = httpx.get(link)
    assert first.status_code == 303 and "set-cookie" in first.headers
    replayed = httpx.get(link, headers=HTML)
    assert replayed.status_code == 401 and "set-cookie" not in replayed.headers
    assert "already used" in replayed.text


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp_in": 600}, "at most 120 seconds"),  # relative: parameters are made at collection, long before
        (
            {"iat_in": 3600, "exp_in": 3660},
            "issued in the future",
        ),  # dated an hour ahead: 60 s by exp - iat, valid for an hour
        ({"aud": None}, "aud"),
        ({"aud": "synchub"}, "aud"),  # the CRM's ordinary API token is no sign-in link
        ({"jti": None}, "jti"),
        ({"iat": None}, "iat"),
    ],
    ids=["long-lived", "future-iat", "no-aud", "api-token", "no-jti", "no-iat"],
)
def test_a_long_lived_or_incomplete_sign_in_token_is_refused(
    hub: str, jwt_secret: str, changes: dict[str, Any], reason: str
) -> None:
    token = jwt.encode({"alg": "HS256"}, signin_claims(**changes), OctKey.import_key(jwt_secret))
    answer = httpx.get(f"{hub}/session", params={"token": token, "next": "/"}, headers=HTML)
    assert answer.status_code == 401 and "set-cookie" not in answer.headers
    assert reason in answer.text


def test_an_attackers_link_while_signed_in_asks_which_account_and_does_not_switch(
    hub: str, jwt_secret: str, redis_url: str
) -> None:
    victim, csrf = signed_in_client(hub, jwt_secret, "victim", "ws-victim")
    attackers = signin.signin_link(hub, jwt_secret, "attacker", "ws-attacker", next="/connect/google")
    asked = victim.get(attackers, headers=HTML, follow_redirects=False)
    assert asked.status_code == 200 and "Which account?" in asked.text
    assert "attacker" in asked.text and "set-cookie" not in asked.headers
    assert who(victim, hub) == "victim in workspace ws-victim"
    connect_page = victim.get(f"{hub}/connect/google", headers=HTML)
    assert "Connect a Google account to ws-victim as victim" in connect_page.text

    forged = {"choice": "switch"}  # another site's form: no CSRF token, a foreign Origin
    other_site = {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}
    refused = victim.post(f"{hub}/session/switch", data=forged, headers=other_site, follow_redirects=False)
    assert refused.status_code == 403 and who(victim, hub) == "victim in workspace ws-victim"

    stay = victim.post(f"{hub}/session/switch", data={"choice": "stay", "csrf_token": csrf}, headers={"Origin": hub})
    assert stay.status_code == 303 and who(victim, hub) == "victim in workspace ws-victim"
    late = victim.post(f"{hub}/session/switch", data={"choice": "switch", "csrf_token": csrf}, headers={"Origin": hub})
    assert late.status_code == 400, "a choice made is not made again"

    mine = signin.signin_link(hub, jwt_secret, "victim-other-account", "ws-victim", next="/connect/google")
    assert "Which account?" in victim.get(mine, headers=HTML).text
    switched = victim.post(
        f"{hub}/session/switch",
        data={"choice": "switch", "csrf_token": csrf},
        headers={"Origin": hub},
        follow_redirects=False,
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/connect/google"
    assert who(victim, hub) == "victim-other-account in workspace ws-victim", "the user's own choice to switch"
    victim.close()


def test_cross_site_page_posts_are_refused_and_change_nothing(
    hub: str, jwt_secret: str, sessions: sessionmaker[Session], redis_url: str
) -> None:
    connection_id = new_connection(sessions, "ws-xsite", "owner")
    browser, csrf = signed_in_client(hub, jwt_secret, "owner", "ws-xsite")
    other_port = {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}
    attempts = [
        (other_port, {"csrf_token": csrf}),  # the token leaked, the Origin still foreign
        ({}, {"csrf_token": csrf}),  # no Origin at all
        ({"Origin": "null"}, {"csrf_token": csrf}),
        ({"Origin": hub}, {}),  # this site's Origin, no token
        ({"Origin": hub}, {"csrf_token": "guessed"}),
    ]
    targets = [
        f"/connections/{connection_id}/pause",
        f"/connections/{connection_id}/disconnect",
        "/connect/google",
        "/session/sign-out",
    ]
    states = redis.Redis.from_url(redis_url)
    before = len(list(states.scan_iter(f"{STATE_PREFIX}*")))
    for headers, form in attempts:
        for target in targets:
            answer = browser.post(f"{hub}{target}", data=form, headers=headers, follow_redirects=False)
            assert answer.status_code == 403, (target, headers, form, answer.status_code)
    assert state_of(sessions, connection_id) == ("active", 0)
    assert len(list(states.scan_iter(f"{STATE_PREFIX}*"))) == before, "no consent flow was started"
    assert who(browser, hub) == "owner in workspace ws-xsite", "the session was not ended"

    paused = browser.post(
        f"{hub}/connections/{connection_id}/pause", data={"csrf_token": csrf}, headers={"Origin": hub}
    )
    assert paused.status_code == 303 and state_of(sessions, connection_id)[0] == "paused", "the page's own form"
    browser.close()


def test_the_cookie_alone_on_an_api_write_is_401(
    hub: str, jwt_secret: str, sessions: sessionmaker[Session], redis_url: str
) -> None:
    connection_id = new_connection(sessions, "ws-cookie", "owner")
    browser, csrf = signed_in_client(hub, jwt_secret, "owner", "ws-cookie")
    same_site = {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site", "X-CSRF-Token": csrf}
    api = f"{hub}/api/v1/connections/{connection_id}"
    for method, url in (("POST", f"{api}/pause"), ("DELETE", api), ("POST", f"{api}/sync")):
        answer = browser.request(method, url, headers=same_site)
        assert answer.status_code == 401, (method, url, answer.text)
    assert browser.post(f"{hub}/api/v1/connect/google", headers=same_site).status_code == 401
    assert state_of(sessions, connection_id) == ("active", 0)
    assert browser.get(api).status_code == 200, "the page's live progress reads the API with the cookie"

    bearer = {"Authorization": f"Bearer {issue_token(jwt_secret, 'owner', 'ws-cookie', 60)}"}
    assert httpx.post(f"{api}/pause", headers=bearer).status_code == 200
    assert state_of(sessions, connection_id)[0] == "paused"
    browser.close()


def test_the_json_start_connect_never_returns_a_consent_url(hub: str, jwt_secret: str, engine: Engine) -> None:
    bearer = {"Authorization": f"Bearer {issue_token(jwt_secret, 'asker', 'ws-ask', 60)}"}
    answer = httpx.post(f"{hub}/api/v1/connect/google", json={"capabilities": ["contacts"]}, headers=bearer)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["next"] == "/connect/google?capabilities=contacts"
    assert set(body) == {"next", "sign_in_url"} and "oauth2" not in answer.text and "state=" not in answer.text
    assert body["sign_in_url"].startswith(f"{hub}/session?")

    with httpx.Client(timeout=30) as browser:
        page = browser.get(body["sign_in_url"], headers=HTML, follow_redirects=True)
        assert page.status_code == 200 and "Connect a Google account to ws-ask as asker" in page.text
        assert str(page.url) == f"{hub}/connect/google?capabilities=contacts", "a page to confirm, not a redirect"
        assert browser.get(body["sign_in_url"], headers=HTML).status_code == 401, "the link works once"


def test_an_rs256_hub_answers_no_sign_in_link(hub_env: dict[str, str], engine: Engine) -> None:
    """With RS256 only the CRM holds the signing key: the JSON start answers the page and leaves sign-in to it."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    env = {**hub_env, **GOOGLE, "SYNCHUB_IDENTITY__JWT_ALGORITHM": "RS256"}
    env["SYNCHUB_IDENTITY__JWT_PUBLIC_KEY"] = public_pem.decode()
    key = RSAKey.import_key(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    claims = {"sub": "rs-user", "workspace_id": "ws-rs", "aud": "synchub", "exp": int(time.time()) + 60}
    token = jwt.encode({"alg": "RS256"}, claims, key)
    with LiveServer(create_app(settings_from_env(env), engine)) as server:
        answer = httpx.post(f"{server.url}/api/v1/connect/google", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json() == {
        "next": "/connect/google?capabilities=contacts",
        "sign_in_url": None,
    }


def test_sign_out_ends_the_session(hub: str, jwt_secret: str) -> None:
    browser, csrf = signed_in_client(hub, jwt_secret, "leaver", "ws-leave")
    cookie = dict(browser.cookies)
    out = browser.post(f"{hub}/session/sign-out", data={"csrf_token": csrf}, headers={"Origin": hub})
    assert out.status_code == 200 and "signed out" in out.text.lower()
    assert browser.get(f"{hub}/", headers=HTML).status_code == 401
    replayed = httpx.get(f"{hub}/", headers=HTML, cookies=cookie)
    assert replayed.status_code == 401, "the session ended on the server: its old cookie opens nothing"
    browser.close()


def test_the_session_ends_on_the_server_after_its_own_lifetime(start_hub: Callable[..., str], jwt_secret: str) -> None:
    """The lifetime is a setting, kept by the server: a cookie replayed after it opens nothing."""
    short = start_hub(SYNCHUB_IDENTITY__SESSION_HOURS=str(2 / 3600))  # two seconds
    browser, _csrf = signed_in_client(short, jwt_secret, "brief", "ws-brief")
    cookie = dict(browser.cookies)
    signed_in_at = time.monotonic()
    assert who(browser, short) == "brief in workspace ws-brief"
    wait_for(
        lambda: httpx.get(f"{short}/", headers=HTML, cookies=cookie).status_code == 401,
        timeout=10,
        interval=0.2,
        what="the session to end",
    )
    assert time.monotonic() - signed_in_at > 1.5, "the session ended before its lifetime"
    browser.close()


def test_the_dev_sign_in_link_works_every_time_and_only_when_turned_on(start_hub: Callable[..., str], hub: str) -> None:
    dev = start_hub(SYNCHUB_IDENTITY__DEV_SIGNIN="true")
    for _ in range(3):  # a fresh one-time token on each visit: the printed link keeps working
        with httpx.Client(timeout=30) as browser:
            landed = browser.get(f"{dev}/dev/sign-in", headers=HTML, follow_redirects=True)
            assert landed.status_code == 200 and "Signed in as demo-user in workspace demo-workspace" in landed.text
    not_signed_in = httpx.get(f"{dev}/", headers=HTML)
    assert not_signed_in.status_code == 401 and 'href="/dev/sign-in"' in not_signed_in.text

    public = start_hub(SYNCHUB_IDENTITY__DEV_SIGNIN="true", SYNCHUB_PUBLIC_URL="https://hub.example.com")
    for off in (hub, public):
        assert httpx.get(f"{off}/dev/sign-in").status_code == 404
        assert "/dev/sign-in" not in httpx.get(f"{off}/", headers=HTML).text
