"""CalDAV connections for the sync tests and the benchmark: through the hub's connect API (discovery, the vault), or,
for the benchmark, which runs no API, written as that leaves them (auth provider `caldav`, the principal URL as the
provider account id, the username and app password sealed as the secrets `username` and `password`)."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Connection
from core.settings import Settings
from tests.caldav.servers import CalDAVServer
from token_vault.vault import Vault, key_ring, secret_kind


def principal_url(server: CalDAVServer, base: str | None = None) -> str:
    """The principal URL discovery finds (absolute, trailing slash), reached through `base` if given."""
    with server.client() as client:
        path = client.principal().url.path
    root = (base or server.url).rstrip("/")
    return f"{root}/{path.strip('/')}/"


def connected_by_api(browser: httpx.Client, hub_url: str, server: CalDAVServer, base: str | None = None) -> uuid.UUID:
    """The signed-in user connects the server's account (reached at `base`, a recording front, if given)."""
    fields = {"server_url": base or server.url, "username": server.username, "password": server.password}
    answer = browser.post(f"{hub_url}/api/v1/connect/caldav", json={"fields": fields})
    assert answer.status_code == 200, answer.text
    return uuid.UUID(answer.json()["connection_id"])


def connected(
    settings: Settings,
    sessions: sessionmaker[Session],
    server: CalDAVServer,
    user: str,
    workspace: str,
    base: str | None = None,
) -> uuid.UUID:
    vault = Vault(key_ring(settings.vault))
    with transaction(sessions) as session:
        connection = Connection(
            workspace_id=workspace,
            user_id=user,
            auth_provider="caldav",
            provider_account_id=principal_url(server, base),
            capabilities=["calendar"],
            granted_scopes=[],
        )
        session.add(connection)
        session.flush()
        vault.store(session, connection, secret_kind("username"), server.username)
        vault.store(session, connection, secret_kind("password"), server.password)
        return connection.id
