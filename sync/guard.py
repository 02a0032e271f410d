"""Every provider call of a run goes through here: one token from the app's, the connection's and (where the
connector limits each one) the resource's buckets, then the call under the in-place retry policy. A throttle signal
pauses the bucket it names for every worker. The requests that actually leave for the provider are counted for
the run's record."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from connectors.base import ConnectorSpec, StreamContext
from connectors.registry import settings_of
from core.errors import RateLimited
from core.metrics import throttle_waited
from core.settings import Settings
from oauth.providers import client_settings
from sync import retry
from sync.throttle import Bucket, Throttle

T = TypeVar("T")


class Throttled(RateLimited):
    """Our own bucket says wait: the run reschedules for exactly that long instead of sleeping. `reserved`: the
    token is already taken for then, and the next slice's first call must not take another."""

    reserved: bool = False


@dataclass
class Prepaid:
    """A token a run reserved before it was rescheduled: its next slice's first call spends it."""

    left: bool = False

    def use(self) -> bool:
        used, self.left = self.left, False
        return used


@dataclass
class Calls:
    """Requests sent to the provider for a run and not yet added to its row. The stream's reading thread counts
    (`sent`, called by the connector as each request leaves), the thread writing the run takes."""

    _count: int = 0
    total: int = 0
    """Every request sent through this counter, taken or not."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self) -> None:
        with self._lock:
            self._count += 1
            self.total += 1

    def take(self) -> int:
        with self._lock:
            count, self._count = self._count, 0
            return count


@dataclass(frozen=True)
class Buckets:
    """The buckets one stream's calls take from; `resource` only where the connector limits each resource."""

    app: Bucket
    connection: Bucket
    resource: Bucket | None = None

    def all(self) -> tuple[Bucket, ...]:
        return tuple(bucket for bucket in (self.app, self.connection, self.resource) if bucket is not None)

    def token_interval(self) -> float:
        """Seconds the slowest bucket takes to refill one token. A throttled unit of work (a run's slice, a
        webhook delivery) is tried again that much after its next token is due, so it finds two: waiting for
        exactly one, a unit that makes two calls would spend it on its first call and be throttled on its second,
        again and again."""
        rates = [bucket.rate for bucket in self.all() if bucket.rate > 0]
        return 1 / min(rates) if rates else 0.0

    def named(self, scope: str) -> Bucket:
        """The bucket a throttle signal's scope names (a resource's, if the connector keeps none, is the
        connection's)."""
        if scope == "resource":
            return self.resource or self.connection
        return self.connection if scope == "connection" else self.app


@dataclass(frozen=True)
class Guard:
    """`reserve_within`: when the buckets are empty, reserve the next token due within that many seconds (a run's
    slice, which can be rescheduled to the moment), instead of trying again later; 0 never reserves."""

    throttle: Throttle
    buckets: Buckets
    reserve_within: float = 0.0
    prepaid: Prepaid = field(default_factory=Prepaid)

    @property
    def connector(self) -> str:
        """The connector slug, the first part of every bucket's key."""
        return self.buckets.app.key.partition(":")[0]

    def attempt(self, call: Callable[[], T]) -> T:
        return retry.in_place(lambda: self._once(call))

    def _once(self, call: Callable[[], T]) -> T:
        if self.prepaid.use():
            wait = 0.0
        elif self.reserve_within > 0:
            wait, reserved = self.throttle.reserve(self.buckets.all(), self.reserve_within)
            if reserved:
                throttle_waited(self.connector, "bucket")
                throttled = Throttled(f"waiting {wait:.1f}s for a reserved token of the shared rate limit", wait)
                throttled.reserved = True
                raise throttled
        else:
            wait = self.throttle.take(self.buckets.all())
        if wait > 0:
            throttle_waited(self.connector, "bucket")
            wait += self.buckets.token_interval()
            raise Throttled(f"waiting {wait:.1f}s for the shared rate limit", wait)
        try:
            return call()
        except RateLimited as exc:
            throttle_waited(self.connector, "provider")
            key = self.buckets.named(exc.scope).key
            if exc.retry_after is not None:
                exc.retry_after = self.throttle.pause(key, exc.retry_after)
            else:
                exc.retry_after = self.throttle.backoff(key)
            raise


def app_key(settings: Settings, spec: ConnectorSpec, ctx: StreamContext) -> str:
    """What the connector's app quota is counted against: what it declares (a server's host, where there is no
    OAuth client), else its auth provider's OAuth client."""
    if spec.rate_limits.app_key is not None:
        return spec.rate_limits.app_key(ctx)
    client = client_settings(settings, spec.auth_provider) if spec.needs_oauth_client else None
    return client.client_id if client is not None else "default"


def buckets(settings: Settings, spec: ConnectorSpec, ctx: StreamContext) -> Buckets:
    """The app's bucket (one per connector and app key), the connection's, and the resource's (one per app and
    provider resource, shared by every connection to it, as a Page's quota is), sized from the connector's
    declared limits unless the deployment overrides them."""
    tuning = settings_of(settings, spec)
    limits = spec.rate_limits
    app = app_key(settings, spec, ctx)
    own_limit = tuning.connection_requests_per_minute or limits.connection_per_minute
    resource_limit = tuning.resource_requests_per_minute or limits.resource_per_minute
    resource = None
    if resource_limit and ctx.resource is not None:
        digest = hashlib.sha256(ctx.resource.external_id.encode()).hexdigest()[:32]
        resource = Bucket.per_minute(f"{spec.slug}:resource:{app}:{digest}", resource_limit)
    return Buckets(
        app=Bucket.per_minute(f"{spec.slug}:app:{app}", tuning.app_requests_per_minute or limits.app_per_minute),
        connection=Bucket.per_minute(f"{spec.slug}:connection:{ctx.connection_id}", own_limit),
        resource=resource,
    )
