"""Fresh access tokens: one refresh per connection at a time, under a Redis lock, re-reading after taking it."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal, Protocol, overload

import redis
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.errors import AuthRevoked, ConnectorError, Retryable
from core.metrics import token_refreshed
from core.models import Connection, ConnectionStatus, audit, audit_daily, utcnow
from token_vault.vault import Secret, Vault

log = logging.getLogger(__name__)

ACCESS, REFRESH = "access_token", "refresh_token"
LOCK_PREFIX = "synchub:vault:refresh:"


class NoCredential(AuthRevoked):
    """The connection's access token expired (or was refused) and it has no refresh token to renew it with, as
    where the provider issues none: the user has to connect again."""


class Inactive(Exception):
    """The connection is paused or disconnected: no provider call is made for it (not a failure)."""


class RefreshBusy(Retryable):
    """Another worker held the refresh lock for longer than a refresh can take: try again later."""


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
        connection, access, _ = self._read(connection_id, refresh=False)
        if self._fresh(access) and connection.status == ConnectionStatus.ACTIVE.value:
            assert access is not None
            return access.value
        return self._refresh(connection_id, rejected=None)

    def rejected(self, connection_id: uuid.UUID, token: str) -> str:
        """The provider refused `token`: refresh unless another worker already replaced it."""
        return self._refresh(connection_id, rejected=token)

    def renew(self, connection_id: uuid.UUID, ahead: timedelta) -> bool:
        """Background refresh: renew unless the token is valid for `ahead` more; True if a refresh happened."""
        return self._refresh(connection_id, rejected=None, margin=ahead, force=True) is not None

    def _fresh(self, access: Secret | None, margin: timedelta | None = None) -> bool:
        """Valid for `margin` more; a credential without an expiry is never stale."""
        if access is None:
            return False
        wanted = utcnow() + (self.margin if margin is None else margin)
        return access.expires_at is None or access.expires_at > wanted

    def _read(self, connection_id: uuid.UUID, refresh: bool = True) -> tuple[Connection, Secret | None, Secret | None]:
        """The connection and its access token; the refresh token too unless `refresh` is False (every provider
        call reads the access token, only a refresh needs the other)."""
        with self.sessions() as session:
            connection = session.get_one(Connection, connection_id)
            session.expunge(connection)
            return (
                connection,
                self.vault.read(session, connection, ACCESS),
                self.vault.read(session, connection, REFRESH) if refresh else None,
            )

    def _usable(self, access: Secret | None, rejected: str | None, margin: timedelta | None = None) -> str | None:
        if self._fresh(access, margin) and access is not None and access.value != rejected:
            return access.value
        return None

    @overload
    def _refresh(self, connection_id: uuid.UUID, rejected: str | None) -> str: ...
    @overload
    def _refresh(
        self, connection_id: uuid.UUID, rejected: str | None, margin: timedelta, force: Literal[True]
    ) -> str | None: ...

    def _refresh(
        self, connection_id: uuid.UUID, rejected: str | None, margin: timedelta | None = None, force: bool = False
    ) -> str | None:
        """Refresh under the connection's lock; waiters watch the lock and re-read instead of queueing on it.

        Only one caller at a time talks to the token endpoint. The others return the token it stored, and if
        the holder dies they take over once its lock expires. None of them ever returns an expired token.
        """
        key = LOCK_PREFIX + str(connection_id)
        deadline = time.monotonic() + self.lock_ttl * 2 + 5
        while True:
            lock = self.redis.lock(key, timeout=self.lock_ttl)
            if lock.acquire(blocking=False):
                try:
                    return self._refresh_locked(connection_id, rejected, margin, force)
                finally:
                    if lock.owned():
                        lock.release()
            while self.redis.exists(key):
                if time.monotonic() > deadline:
                    raise RefreshBusy(f"no refresh of connection {connection_id} within {self.lock_ttl * 2:.0f}s")
                time.sleep(random.uniform(0.02, 0.06))
            connection, access, _ = self._read(connection_id, refresh=False)
            ensure_usable(connection)
            token = self._usable(access, rejected)
            if token is not None and not force:
                return token

    def _refresh_locked(
        self, connection_id: uuid.UUID, rejected: str | None, margin: timedelta | None, force: bool
    ) -> str | None:
        connection, access, refresh = self._read(connection_id)
        ensure_usable(connection)
        token = self._usable(access, rejected, margin)
        if token is not None:
            return None if force else token
        if refresh is None:
            return self._unrenewable(connection_id, access, rejected, force)
        try:
            new = self.refresher(connection, refresh.value)
        except AuthRevoked as exc:
            token_refreshed("revoked")
            self._revoked(connection_id, str(exc), REFRESH, refresh.value)
            raise
        except Exception:
            token_refreshed("failed")
            raise
        token_refreshed("ok")
        if not self._store(connection_id, new, refresh.value):
            raise Inactive("the connection changed while its token was being refreshed")
        log.info("token refreshed", extra={"connection_id": str(connection_id)})
        return new.access_token

    def _unrenewable(
        self, connection_id: uuid.UUID, access: Secret | None, rejected: str | None, force: bool
    ) -> str | None:
        """A grant without a refresh token (some providers issue none, only long-lived access tokens): its access
        token serves until it expires or the provider refuses it, then the user has to connect again. No refresh
        is attempted: without a refresh token none can work."""
        if access is None:  # a connection that holds only named secrets was asked for a token: its connector's bug
            raise ConnectorError("this connection holds no access token; its connector reads a secret instead")
        if access is not None and access.value != rejected and not _expired(access):
            return None if force else access.value
        if access is not None and access.value == rejected:
            reason, cause = "the provider no longer accepts this connection's access", "access_refused"
        else:
            reason, cause = "access to this account has expired and cannot be renewed without you", "access_expired"
        self._revoked(connection_id, reason, ACCESS, access.value if access else None, cause)
        raise NoCredential(reason)

    def _current(self, session: Session, connection_id: uuid.UUID, kind: str, used: str | None) -> Connection | None:
        """The connection, locked, if it is still active on the credential (of `kind`) this caller used; a
        reconnect or a disconnect meanwhile (a new grant, or none) makes the caller's outcome stale: it is dropped."""
        connection = session.get(Connection, connection_id, with_for_update=True, populate_existing=True)
        if connection is None or connection.status != ConnectionStatus.ACTIVE.value:
            return None
        stored = self.vault.read(session, connection, kind)
        return connection if (stored.value if stored is not None else None) == used else None

    def _revoked(
        self, connection_id: uuid.UUID, reason: str, kind: str, used: str | None, cause: str = "refresh_refused"
    ) -> None:
        """The grant is gone: stop every call for this connection until the user reconnects."""
        with transaction(self.sessions) as session:
            connection = self._current(session, connection_id, kind, used)
            if connection is not None:
                connection.move_to(ConnectionStatus.NEEDS_REAUTH, reconnect_reason(reason))
                audit(session, connection, "system", "connection.needs_reauth", cause=cause)

    def _store(self, connection_id: uuid.UUID, new: Refreshed, old_refresh: str) -> bool:
        """Keep the new access token; the refresh token only when the provider rotated it (Authlib echoes the
        old one back when the provider sends none)."""
        rotated = bool(new.refresh_token) and new.refresh_token != old_refresh
        with transaction(self.sessions) as session:
            connection = self._current(session, connection_id, REFRESH, old_refresh)
            if connection is None:
                log.info("refresh outcome dropped: the connection changed", extra={"connection_id": str(connection_id)})
                return False
            self.vault.store(session, connection, ACCESS, new.access_token, new.expires_at)
            if rotated and new.refresh_token:
                self.vault.store(session, connection, REFRESH, new.refresh_token)
            connection.refreshed_at, connection.refresh_failures, connection.refresh_retry_at = utcnow(), 0, None
            audit_daily(session, connection, "system", "token.refreshed")
        return True


def ensure_usable(connection: Connection) -> None:
    """Raise unless the connection may call its provider: AuthRevoked if it needs reconnecting, else Inactive."""
    if connection.status == ConnectionStatus.NEEDS_REAUTH.value:
        raise AuthRevoked(connection.status_reason or "the connection needs to be reconnected")
    if connection.status != ConnectionStatus.ACTIVE.value:
        raise Inactive(f"the connection is {connection.status.replace('_', ' ')}")


def _expired(access: Secret) -> bool:
    return access.expires_at is not None and access.expires_at <= utcnow()


def reconnect_reason(reason: str) -> str:
    """The sentence the settings page shows on a connection that needs the user to connect again."""
    return f"{reason.rstrip('.')}. Reconnect to resume syncing."
