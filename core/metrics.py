"""The hub's Prometheus counters; a worker started with `--metrics-port` adds up its pool's (multiprocess mode)."""

from __future__ import annotations

from prometheus_client import Counter

PROVIDER_CALLS = Counter(
    "synchub_provider_calls",
    "Requests sent to a provider, by connector and the answer's HTTP status (`2xx` for any success, `none` when "
    "no answer came).",
    ["connector", "code"],
)
THROTTLE_WAITS = Counter(
    "synchub_throttle_waits",
    "Provider calls held back: by the hub's shared rate limit (`bucket`) or by the provider's throttle answer "
    "(`provider`), by connector.",
    ["connector", "cause"],
)
TOKEN_REFRESHES = Counter(
    "synchub_token_refreshes",
    "Access token refreshes by outcome: `ok`, `revoked` (the user must reconnect), `failed` (retried later).",
    ["outcome"],
)


def provider_answered(connector: str, status: int | None) -> None:
    """Count one provider request by its answer's status (any success as `2xx`); None when no answer came (a
    timeout, a lost connection)."""
    code = "none" if status is None else "2xx" if 200 <= status < 300 else str(status)
    PROVIDER_CALLS.labels(connector=connector, code=code).inc()
