"""Fan-out: a request never becomes more work than it names, and `/session`, connect starts and sync-now are limited
per user and per client address (429 with Retry-After), the address taken from X-Forwarded-For only behind a
trusted proxy."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.identity import issue_signin_token, issue_token
from core.models import Connection
from hub.app import create_app
from sync.models import SyncRun
from tests.conftest import LiveServer, settings_from_env

CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"
GOOGLE = {
    "SYNCHUB_CONNECTORS": "google_contacts",
    "SYNCHUB_GOOGLE__CLIENT_ID": "fanout",
    "SYNCHUB_GOOGLE__CLIENT_SECRET": "fanout-secret",
    "SYNCHUB_GOOGLE__BASE_URL": "http://127.0.0.1:9",
}
TIGHT = {
    "SYNCHUB_REQUEST_LIMITS__PER_USER_PER_MINUTE": "6",
    "SYNCHUB_REQUEST_LIMITS__USER_BURST": "3",
    "SYNCHUB_REQUEST_LIMITS__PER_ADDRESS_PER_MINUTE": "6",
    "SYNCHUB_REQUEST_LIMITS__ADDRESS_BURST": "5",
}


@pytest.fixture(scope="module")
def hub_factory(hub_env: dict[str, str], engine: Engine) -> Iterator[Callable[..., str]]:
    servers: list[LiveServer] = []

    def start(**overrides: str) -> str:
        server = LiveServer(create_app(settings_from_env({**hub_env, **GOOGLE, **overrides}), engine)).__enter__()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    """This session's Redis, without any request bucket left by an earlier test (they all come from 127.0.0.1)."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("synchub:limit:*"):
        client.delete(key)
    yield client
    client.close()


def client(url: str, user: str, workspace: str, jwt_secret: str) -> httpx.Client:
    token = issue_token(jwt_secret, user, workspace, 600)
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


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


def sync_messages(broker: redis.Redis) -> int:
    """Celery messages waiting in the `sync` queue (and its priority lists); no worker runs in this module."""
    return sum(int(broker.llen(key)) for key in broker.scan_iter("sync*") if broker.type(key) == b"list")


def test_a_connect_request_naming_a_capability_twice_or_an_unknown_one_is_refused(
    hub_factory: Callable[..., str], broker: redis.Redis, jwt_secret: str
) -> None:
    url = hub_factory()
    with client(url, "asker", "ws-fan-connect", jwt_secret) as api:
        for asked in ("contacts,contacts", "contacts, contacts", "contacts,nope"):
            named = [c.strip() for c in asked.split(",")]
            refused = api.post("/api/v1/connect/google", json={"capabilities": named})
            assert refused.status_code == 400, (asked, refused.status_code)
            assert "next" not in refused.text
        started = api.post("/api/v1/connect/google", json={"capabilities": ["contacts"]})
        assert started.status_code == 200 and started.json()["next"] == "/connect/google?capabilities=contacts"


def test_sync_now_for_a_capability_the_connection_lacks_is_404_and_queues_nothing(
    hub_factory: Callable[..., str], broker: redis.Redis, sessions: sessionmaker[Session], jwt_secret: str
) -> None:
    url = hub_factory()
    connection_id = new_connection(sessions, "ws-fan-404", "owner")
    before = sync_messages(broker)
    with client(url, "owner", "ws-fan-404", jwt_secret) as api:
        for capability in ("nope", "events"):
            answer = api.post(f"/api/v1/connections/{connection_id}/sync", params={"capability": capability})
            assert answer.status_code == 404, (capability, answer.text)
    with sessions() as session:
        runs = session.scalar(select(func.count()).where(SyncRun.connection_id == connection_id))
    assert runs == 0 and sync_messages(broker) == before


def test_sync_now_that_reuses_the_active_run_sends_no_new_message(
    hub_factory: Callable[..., str], broker: redis.Redis, sessions: sessionmaker[Session], jwt_secret: str
) -> None:
    url = hub_factory()
    connection_id = new_connection(sessions, "ws-fan-reuse", "owner")
    before = sync_messages(broker)
    with client(url, "owner", "ws-fan-reuse", jwt_secret) as api:
        answers = [api.post(f"/api/v1/connections/{connection_id}/sync") for _ in range(12)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert len({a.json()["runs"]["contacts"] for a in answers}) == 1, "every request joined the one active run"
    assert sync_messages(broker) - before == 1, "one run, one message"


def test_sync_now_over_a_users_limit_gets_429_with_retry_after(
    hub_factory: Callable[..., str], broker: redis.Redis, sessions: sessionmaker[Session], jwt_secret: str
) -> None:
    url = hub_factory(**TIGHT)
    mine, theirs = new_connection(sessions, "ws-fan-rl", "busy"), new_connection(sessions, "ws-fan-rl", "calm")
    with client(url, "busy", "ws-fan-rl", jwt_secret) as busy, client(url, "calm", "ws-fan-rl", jwt_secret) as calm:
        answers = [busy.post(f"/api/v1/connections/{mine}/sync") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 10
        assert calm.post(f"/api/v1/connections/{theirs}/sync").status_code == 200, "another user has their own"


def test_connect_start_over_a_users_limit_gets_429(
    hub_factory: Callable[..., str], broker: redis.Redis, jwt_secret: str
) -> None:
    url = hub_factory(**TIGHT)
    with client(url, "starter", "ws-fan-rl", jwt_secret) as api:
        answers = [api.post("/api/v1/connect/google", json={"capabilities": ["contacts"]}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1


def sign_in(url: str, jwt_secret: str, user: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    token = issue_signin_token(jwt_secret, user, "ws-fan-session")
    return httpx.get(f"{url}/session", params={"token": token, "next": "/"}, headers=headers, timeout=30)


def test_session_is_limited_per_socket_address_when_no_proxy_is_trusted(
    hub_factory: Callable[..., str], broker: redis.Redis, jwt_secret: str
) -> None:
    url = hub_factory(**TIGHT)
    answers = [sign_in(url, jwt_secret, f"visitor-{n}", f"198.51.100.{n}") for n in range(6)]
    assert [a.status_code for a in answers] == [303] * 5 + [429], "X-Forwarded-For from an untrusted peer is ignored"
    assert int(answers[-1].headers["retry-after"]) >= 1


def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(
    hub_factory: Callable[..., str], broker: redis.Redis, jwt_secret: str
) -> None:
    url = hub_factory(**TIGHT, SYNCHUB_TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8")
    spread = [sign_in(url, jwt_secret, f"visitor-{n}", f"198.51.100.{n}") for n in range(8)]
    assert [a.status_code for a in spread] == [303] * 8, "each client behind the proxy has its own bucket"

    # What a client writes itself stands left of what the proxies appended: the rightmost untrusted hop counts.
    same = [sign_in(url, jwt_secret, f"crowd-{n}", f"192.0.2.{n}, 203.0.113.7, 10.1.2.3") for n in range(6)]
    assert [a.status_code for a in same] == [303] * 5 + [429]
    assert sign_in(url, jwt_secret, "elsewhere", "203.0.113.8").status_code == 303

    by_user = [sign_in(url, jwt_secret, "one-person", f"198.18.0.{n}") for n in range(4)]
    assert [a.status_code for a in by_user] == [303, 303, 303, 429], "one user is limited wherever they come from"
