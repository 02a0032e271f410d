"""Calendar API failures, classified by what the hub must do (shared/providers.md 3.4, 3.8)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.google_contacts.errors import reasons, retry_after
from core.errors import (
    AuthRevoked,
    ConnectorError,
    CursorExpired,
    PayloadRejected,
    RateLimited,
    Retryable,
    ScopeMissing,
)

SCOPE_REASONS = {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "forbidden"}
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "RATE_LIMIT_EXCEEDED"}


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> ConnectorError:
    why = reasons(body)
    message = str(body.get("message", ""))
    if status == 410:  # fullSyncRequired (or updatedMinTooLongAgo): the sync token is gone
        return CursorExpired("Google Calendar's sync token is no longer valid; a full sync is needed")
    if status == 401:
        return AuthRevoked("Google refused a freshly renewed access token, so access was revoked")
    if status == 429 or (status == 403 and why & RATE_REASONS):
        per_user = bool(why & {"userRateLimitExceeded", "rateLimitExceeded"}) and status == 403
        return RateLimited(
            f"Google Calendar throttled the request ({status})",
            retry_after(headers),
            "connection" if per_user or "quotaExceeded" in why else "app",
        )
    if status == 403 and why & SCOPE_REASONS:
        return ScopeMissing("Google says this account did not grant access to its calendars")
    if status >= 500:
        return Retryable(f"Google Calendar answered {status}")
    return PayloadRejected(f"Google Calendar refused the request ({status}: {message[:200]})")
