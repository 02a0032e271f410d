"""Graph API failures, classified by what the hub must do: https://developers.facebook.com/docs/graph-api/guides/error-handling"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from core.errors import AuthRevoked, ConnectorError, PayloadRejected, RateLimited, Retryable, ScopeMissing

REAUTH_CODES = {102, 190}
PERMISSION_CODES = {10, *range(200, 300)}
TRANSIENT_CODES = {1, 2}
BUSINESS_USE_CASE_CODES = set(range(80000, 80015))
THROTTLE_SCOPES: dict[int, Literal["app", "connection", "resource"]] = {
    4: "app",  # the app's own rate limit
    17: "connection",  # one user's
    32: "connection",  # Pages calls made with one user's token
    613: "app",  # a custom limit on the app
    **{code: "resource" for code in BUSINESS_USE_CASE_CODES},  # a Page's (or business's) Business Use Case limit
}
SECONDS_PER_MINUTE = 60.0
INVALID_PARAMETER = 100


class InvalidParameter(PayloadRejected):
    """Graph refused a parameter (code 100): a stored paging cursor it no longer accepts, among others."""


def usage(headers: Mapping[str, str], name: str) -> Any:
    """A usage header's JSON, or None when absent or not JSON."""
    value = next((v for k, v in headers.items() if k.lower() == name), None)
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def regain_seconds(headers: Mapping[str, str]) -> float | None:
    """The longest `estimated_time_to_regain_access` (minutes) the Business Use Case usage header gives, in
    seconds; None when it gives none above zero (the app usage header has no such estimate)."""
    found = usage(headers, "x-business-use-case-usage")
    minutes = [
        float(entry["estimated_time_to_regain_access"])
        for entries in (found.values() if isinstance(found, dict) else ())
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("estimated_time_to_regain_access"), int | float)
        and entry["estimated_time_to_regain_access"] > 0
    ]
    return max(minutes) * SECONDS_PER_MINUTE if minutes else None


def exhausted(headers: Mapping[str, str]) -> RateLimited | None:
    """A successful answer's usage headers saying a quota is spent (a figure at 100%, or a wait to regain access):
    the next call would be throttled, and calling on extends the block (providers.md 4.9). The Page's (Business
    Use Case) quota before the app's."""
    wait = regain_seconds(headers)
    business = usage(headers, "x-business-use-case-usage")
    entries = [
        entry
        for found in (business.values() if isinstance(business, dict) else ())
        if isinstance(found, list)
        for entry in found
        if isinstance(entry, dict)
    ]
    if wait is not None or any(spent(entry) for entry in entries):
        return RateLimited("Facebook says this Page's call quota is spent", wait, "resource")
    app = usage(headers, "x-app-usage")
    if isinstance(app, dict) and spent(app):
        return RateLimited("Facebook says the app's call quota is spent", None, "app")
    return None


def spent(figures: Mapping[str, Any]) -> bool:
    return any(
        isinstance(figures.get(name), int | float) and figures[name] >= 100
        for name in ("call_count", "total_time", "total_cputime")
    )


def error_of(body: object) -> Mapping[str, Any]:
    inner = body.get("error") if isinstance(body, Mapping) else None
    return inner if isinstance(inner, Mapping) else {}


def classify(status: int | None, body: object, headers: Mapping[str, str]) -> ConnectorError:
    error = error_of(body)
    code = error.get("code")
    message = str(error.get("message", ""))[:200]
    if code in THROTTLE_SCOPES:
        wait = regain_seconds(headers)
        return RateLimited(f"Facebook throttled the request (code {code})", wait, THROTTLE_SCOPES[code])
    if code in REAUTH_CODES:
        return AuthRevoked(f"Facebook no longer accepts this connection's access (code {code})")
    if code in PERMISSION_CODES:
        return ScopeMissing(f"Facebook refused for want of a permission (code {code})")
    if code in TRANSIENT_CODES or error.get("is_transient") is True or (status or 0) >= 500 or not error:
        return Retryable(f"Facebook answered {status} (code {code})")
    refused = InvalidParameter if code == INVALID_PARAMETER else PayloadRejected
    return refused(f"Facebook refused the request ({status}, code {code}: {message})")
