"""People API failures, classified by what the hub must do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import (
    AuthRevoked,
    ConnectorError,
    CursorExpired,
    PayloadRejected,
    RateLimited,
    Retryable,
    ScopeMissing,
)

SCOPE_REASONS = {"ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions"}
RATE_REASONS = {"RATE_LIMIT_EXCEEDED", "rateLimitExceeded", "userRateLimitExceeded"}
INVALID_SYNC_TOKEN = (400, "INVALID_ARGUMENT", frozenset[str](), "Sync token is invalid.")


def reasons(body: Mapping[str, Any]) -> set[str]:
    found = {str(d.get("reason")) for d in body.get("details", []) if isinstance(d, dict) and d.get("reason")}
    found |= {str(e.get("reason")) for e in body.get("errors", []) if isinstance(e, dict) and e.get("reason")}
    return found


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> ConnectorError:
    why = reasons(body)
    message = str(body.get("message", ""))
    if status == 400 and ("EXPIRED_SYNC_TOKEN" in why or "sync token is expired" in message.lower()):
        return CursorExpired("Google's sync token expired; a full sync is needed")
    if (status, body.get("status"), frozenset(why), message) == INVALID_SYNC_TOKEN:
        return CursorExpired("Google no longer knows this sync token; a full sync is needed")
    if status == 401:
        return AuthRevoked("Google refused a freshly renewed access token, so access was revoked")
    if status == 403 and why & SCOPE_REASONS:
        return ScopeMissing("Google says this account did not grant access to contacts")
    if status == 429 or (status == 403 and why & RATE_REASONS):
        per_user = "userRateLimitExceeded" in why or "per user" in message.lower()
        return RateLimited(
            f"Google throttled the request ({status})", retry_after(headers), "connection" if per_user else "app"
        )
    if status >= 500:
        return Retryable(f"Google answered {status}")
    return PayloadRejected(f"Google refused the request ({status}: {message[:200]})")
