"""Calendar API v3 error bodies: the older Google JSON error shape (`error.errors[]` with domain and reason), as
providers.md section 3 quotes it. Importable without the server (the admin client builds fault bodies from it)."""

from __future__ import annotations

import json
from typing import Any

PREFIX = "/calendar/v3/"
SERVICE = "calendar-json.googleapis.com"
# reason: (domain, message); the status is the caller's (rateLimitExceeded is sent as 403 or 429).
REASONS: dict[str, tuple[str, str]] = {
    "rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
    "userRateLimitExceeded": ("usageLimits", "User Rate Limit Exceeded"),
    "quotaExceeded": ("usageLimits", "Calendar usage limits exceeded."),
    "backendError": ("global", "Backend Error"),
    "notFound": ("global", "Not Found"),
    "fullSyncRequired": ("calendar", "Sync token is no longer valid, a full sync is required."),
    "timeRangeEmpty": ("calendar", "The specified time range is empty."),
    "duplicate": ("global", "The requested identifier already exists."),
    "conditionNotMet": ("global", "Precondition Failed"),
}
FAULT_REASONS = {403: "rateLimitExceeded", 429: "rateLimitExceeded", 500: "backendError", 502: "backendError"}
FAULT_MESSAGES = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Deadline Exceeded"}


def error_body(
    code: int,
    reason: str,
    message: str | None = None,
    domain: str | None = None,
    location: str | None = None,
    location_type: str = "parameter",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    known_domain, known_message = REASONS.get(reason, ("global", reason))
    item: dict[str, Any] = {"domain": domain or known_domain, "reason": reason, "message": message or known_message}
    if location is not None:
        item.update(locationType=location_type, location=location)
    return {"error": {"errors": [item], "code": code, "message": item["message"], **(extra or {})}}


def fault_body(status: int, reason: str | None = None) -> dict[str, Any]:
    """The body of an injected failure: 403/429 `rateLimitExceeded` unless another reason is named, 5xx
    `backendError`."""
    reason = reason or FAULT_REASONS.get(status, "backendError")
    message = None if reason != "backendError" else FAULT_MESSAGES.get(status)
    return error_body(status, reason, message)


def fault_text(status: int, reason: str) -> str:
    """`fault_body` as the raw text of a FaultRule `body`, for reasons a bare status does not pick (`quotaExceeded`,
    `userRateLimitExceeded`)."""
    return json.dumps(fault_body(status, reason), separators=(",", ":"))
