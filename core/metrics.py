"""The hub's Prometheus counters; a worker started with `--metrics-port` adds up its pool's (multiprocess mode).

The client is imported at the first count, not when this module is: the client fixes single- or multiprocess mode
when it is imported, and a worker sets its multiprocess folder only once its command line is read, after the CLI
has imported every connector (each connector's operator commands are CLI commands)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter


@cache
def _counters() -> dict[str, Counter]:
    from prometheus_client import Counter

    return {
        "provider_calls": Counter(
            "synchub_provider_calls",
            "Requests sent to a provider, by connector and the answer's HTTP status (`2xx` for any success, `none` "
            "when no answer came).",
            ["connector", "code"],
        ),
        "throttle_waits": Counter(
            "synchub_throttle_waits",
            "Provider calls held back: by the hub's shared rate limit (`bucket`) or by the provider's throttle "
            "answer (`provider`), by connector.",
            ["connector", "cause"],
        ),
        "token_refreshes": Counter(
            "synchub_token_refreshes",
            "Access token refreshes by outcome: `ok`, `revoked` (the user must reconnect), `failed` (retried later).",
            ["outcome"],
        ),
    }


def register() -> None:
    """Create the counters now (at zero), so a scrape lists them before anything has been counted."""
    _counters()


def provider_answered(connector: str, status: int | None) -> None:
    """Count one provider request by its answer's status (any success as `2xx`); None when no answer came (a
    timeout, a lost connection)."""
    code = "none" if status is None else "2xx" if 200 <= status < 300 else str(status)
    _counters()["provider_calls"].labels(connector=connector, code=code).inc()


def throttle_waited(connector: str, cause: str) -> None:
    """Count one call held back, by the shared bucket (`bucket`) or the provider's throttle answer (`provider`)."""
    _counters()["throttle_waits"].labels(connector=connector, cause=cause).inc()


def token_refreshed(outcome: str) -> None:
    """Count one token refresh: `ok`, `revoked` or `failed`."""
    _counters()["token_refreshes"].labels(outcome=outcome).inc()
