"""Every provider call of a run goes through here: one token from the app's and the connection's buckets, then
the call under the in-place retry policy. A throttle signal pauses the bucket it names for every worker. The
requests that actually leave for the provider are counted for the run's record."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from connectors.base import ConnectorSpec
from connectors.registry import settings_of
from core.errors import RateLimited
from core.settings import Settings
from oauth.providers import client_settings
from sync import retry
from sync.throttle import Bucket, Throttle

T = TypeVar("T")


class Throttled(RateLimited):
    """Our own bucket says wait: the run reschedules for exactly that long instead of sleeping."""


@dataclass
class Calls:
    """Requests sent to the provider for a run and not yet added to its row. The stream's reading thread counts
    (`sent`, called by the connector as each request leaves), the thread writing the run takes."""

    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self) -> None:
        with self._lock:
            self._count += 1

    def take(self) -> int:
        with self._lock:
            count, self._count = self._count, 0
            return count


@dataclass(frozen=True)
class Guard:
    throttle: Throttle
    app: Bucket
    connection: Bucket

    def attempt(self, call: Callable[[], T]) -> T:
        return retry.in_place(lambda: self._once(call))

    def _once(self, call: Callable[[], T]) -> T:
        wait = self.throttle.take((self.app, self.connection))
        if wait > 0:
            raise Throttled(f"waiting {wait:.1f}s for the shared rate limit", wait)
        try:
            return call()
        except RateLimited as exc:
            key = self.connection.key if exc.scope == "connection" else self.app.key
            if exc.retry_after is not None:
                exc.retry_after = self.throttle.pause(key, exc.retry_after)
            else:
                exc.retry_after = self.throttle.backoff(key)
            raise


def buckets(settings: Settings, spec: ConnectorSpec, connection_id: str) -> tuple[Bucket, Bucket]:
    """The app's bucket (one per connector and OAuth client) and the connection's, sized from the connector's
    declared limits unless the deployment overrides them."""
    tuning = settings_of(settings, spec)
    app_limit = tuning.app_requests_per_minute or spec.rate_limits.app_per_minute
    own_limit = tuning.connection_requests_per_minute or spec.rate_limits.connection_per_minute
    client = client_settings(settings, spec.auth_provider) if spec.needs_oauth_client else None
    client_id = client.client_id if client is not None else "default"
    return (
        Bucket.per_minute(f"{spec.slug}:app:{client_id}", app_limit),
        Bucket.per_minute(f"{spec.slug}:connection:{connection_id}", own_limit),
    )
