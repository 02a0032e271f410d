"""Fresh access tokens: one refresh per connection at a time, under a Redis lock, re-reading after taking it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import redis
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Connection, audit, utcnow
from token_vault.vault import Secret, Vault

log = logging.getLogger(__name__)

ACCESS, REFRESH = "access_token", "refresh_token"
LOCK_PREFIX = "synchub:vault:refresh:"


class NoCredential(Exception):
    """The connection has no stored refresh credential: the user has to connect again."""


class Refreshed(Protocol):
    @property
    def access_token(self) -> str: ...
    @property
    def refresh_token(self) -> str | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


Refresher = Callable[[Connection, str], Refreshed]


class FreshTokens:
    """`get()` returns an access token valid for at least `margin`; refreshes are serialised per connection.

    `lock_ttl` must exceed the token endpoint's timeout so a live holder never loses the lock; a holder
    that dies releases it by expiry. Only the owner releases (redis-py's token-checked Lock).
    """

    def __init__(
        self,
        vault: Vault,
        sessions: sessionmaker[Session],
        client: redis.Redis,
        refresher: Refresher,
        margin: timedelta = timedelta(minutes=5),
        lock_ttl: float = 30.0,
    ) -> None:
        self.vault, self.sessions, self.redis, self.refresher = vault, sessions, client, refresher
        self.margin, self.lock_ttl = margin, lock_ttl

    def get(self, connection_id: uuid.UUID) -> str:
        access = self._read(connection_id)[1]
        if self._fresh(access):
            assert access is not None
            return access.value
        return self._refresh(connection_id, rejected=None)

    def rejected(self, connection_id: uuid.UUID, token: str) -> str:
        """The provider refused `token`: refresh unless another worker already replaced it."""
        return self._refresh(connection_id, rejected=token)

    def _fresh(self, access: Secret | None) -> bool:
        return access is not None and access.expires_at is not None and access.expires_at > utcnow() + self.margin

    def _read(self, connection_id: uuid.UUID) -> tuple[Connection, Secret | None, Secret | None]:
        with self.sessions() as session:
            connection = session.get_one(Connection, connection_id)
            return (
                connection,
                self.vault.read(session, connection, ACCESS),
                self.vault.read(session, connection, REFRESH),
            )

    def _refresh(self, connection_id: uuid.UUID, rejected: str | None) -> str:
        lock = self.redis.lock(
            LOCK_PREFIX + str(connection_id), timeout=self.lock_ttl, blocking_timeout=self.lock_ttl * 2
        )
        if not lock.acquire():
            raise TimeoutError(f"no refresh lock for connection {connection_id} within {self.lock_ttl * 2:.0f}s")
        try:
            connection, access, refresh = self._read(connection_id)
            replaced = access is not None and access.value != rejected
            if self._fresh(access) and (rejected is None or replaced):
                assert access is not None
                return access.value
            if refresh is None:
                raise NoCredential(f"connection {connection_id} has no refresh token")
            new = self.refresher(connection, refresh.value)
            self._store(connection_id, new)
            log.info("token refreshed", extra={"connection_id": str(connection_id)})
            return new.access_token
        finally:
            if lock.owned():
                lock.release()

    def _store(self, connection_id: uuid.UUID, new: Refreshed) -> None:
        with transaction(self.sessions) as session:
            connection = session.get_one(Connection, connection_id)
            self.vault.store(session, connection, ACCESS, new.access_token, new.expires_at)
            if new.refresh_token:
                self.vault.store(session, connection, REFRESH, new.refresh_token)
            audit(session, connection, "system", "token.refreshed", refresh_token_rotated=bool(new.refresh_token))
