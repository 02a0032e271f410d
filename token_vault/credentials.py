"""A connection's credentials as its streams see them: fresh OAuth tokens and named secrets, read at each call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.db import transaction
from core.errors import SecretMissing
from core.models import Connection, audit
from token_vault.fresh import FreshTokens, ensure_usable
from token_vault.vault import secret_kind


@dataclass(frozen=True)
class ConnectionCredentials:
    """The vault's credentials of one connection (`connectors.base.Credentials`).

    Each call reads the database (about 3 ms), so a call a stream starts after a pause or a disconnect gets no
    credential and makes no provider call. Named secrets are sealed in the credentials table as kind
    `secret:<name>`, under the same key ring, rotation and row binding as tokens, with no expiry.
    """

    fresh: FreshTokens
    connection_id: uuid.UUID

    def access_token(self) -> str:
        return self.fresh.get(self.connection_id)

    def rejected(self, token: str) -> str:
        return self.fresh.rejected(self.connection_id, token)

    def secret(self, name: str) -> str:
        kind = secret_kind(name)
        with self.fresh.sessions() as session:
            connection = session.get_one(Connection, self.connection_id)
            ensure_usable(connection)
            found = self.fresh.vault.read(session, connection, kind)
        if found is None:
            raise SecretMissing(name)
        return found.value

    def keep(self, name: str, value: str) -> None:
        """Seal and upsert; refused (as `secret` is) unless the connection is active, so nothing is written for a
        connection a disconnect has just erased."""
        kind = secret_kind(name)
        with transaction(self.fresh.sessions) as session:
            connection = session.get_one(Connection, self.connection_id, with_for_update=True)
            ensure_usable(connection)
            self.fresh.vault.store(session, connection, kind, value)
            audit(session, connection, "system", "secret.kept", name=name)
