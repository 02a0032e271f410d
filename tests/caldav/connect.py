"""A CalDAV connection as the connect form leaves it (the interface contract with the connect side): auth provider
`caldav`, the principal URL as the provider account id, the username and app password sealed in the vault as the
secrets `username` and `password`. Until the form lands, the tests make it here, in this one function."""

from __future__ import annotations

import uuid

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
