"""The error taxonomy: every provider failure is named by what the hub must do about it.

ConnectorError
├── Retryable            transient (timeout, connection reset, 5xx): retry with back-off
│   └── RateLimited      the provider throttled us: pause the shared bucket for `retry_after` seconds
├── AuthRevoked          the grant is gone (invalid_grant, 401 after a refresh): connection needs reauth
│   └── SecretMissing    a named secret the stream needs was never stored (or was erased): reauth as well
├── ScopeMissing         the token lacks `scopes`: the capability shows "grant access", no retry
├── CursorExpired        the incremental cursor is no longer valid: run a full pass
├── PayloadRejected      the provider's data cannot be used: quarantine, never retry
└── SignatureInvalid     a webhook delivery's signature does not verify: refuse it
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal


class ConnectorError(Exception):
    """Base of every error a connector raises; the message is safe to show a user (no secrets)."""


class Retryable(ConnectorError):
    pass


class RateLimited(Retryable):
    """`scope` says whose quota ran out: the whole provider app's, this connection's (one user's), or the
    resource's (one Page's, across every connection to it)."""

    def __init__(
        self, message: str, retry_after: float | None = None, scope: Literal["app", "connection", "resource"] = "app"
    ) -> None:
        super().__init__(message)
        self.retry_after, self.scope = retry_after, scope


class AuthRevoked(ConnectorError):
    pass


class SecretMissing(AuthRevoked):
    """The connection holds no secret called `name`; a connector that can derive it again may catch this."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the connection has no stored {name!r}")
        self.name = name


class ScopeMissing(ConnectorError):
    def __init__(self, message: str, scopes: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.scopes = frozenset(scopes)


class CursorExpired(ConnectorError):
    pass


class PayloadRejected(ConnectorError):
    pass


class SignatureInvalid(ConnectorError):
    pass
