"""Request rate limits per user and per client address, on the shared Redis token buckets of `sync.throttle`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

import redis
from fastapi import Depends, Request

from core.identity import Principal
from core.settings import Settings
from hub.deps import CurrentUser
from sync.throttle import Bucket, Throttle

PREFIX = "synchub:limit:"

log = logging.getLogger(__name__)


class TooManyRequests(Exception):
    """Over a request limit: try again after `retry_after` whole seconds."""

    def __init__(self, action: str, wait: float) -> None:
        self.retry_after = max(1, math.ceil(wait))
        super().__init__(f"too many {action} requests; try again in {self.retry_after} seconds")


def client_address(request: Request, trusted: Sequence[IPv4Network | IPv6Network]) -> str:
    """The socket's peer; behind trusted proxies, the rightmost X-Forwarded-For hop that is not one of them
    (hops further left are whatever the client wrote)."""
    peer = request.client.host if request.client else "unknown"
    if not trusted or not is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in request.headers.getlist("x-forwarded-for") for hop in value.split(",")]
    for hop in reversed(hops):
        if not is_address(hop):
            break
        peer = str(ip_address(hop))
        if not is_trusted(peer, trusted):
            break
    return peer


def is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def is_trusted(address: str, trusted: Sequence[IPv4Network | IPv6Network]) -> bool:
    return is_address(address) and any(ip_address(address) in network for network in trusted)


def admit(request: Request, action: str, user: Principal | None = None, by_address: bool = True) -> None:
    """Take one request of `action` from the client address's bucket and the user's (when given), both or neither;
    raise TooManyRequests when either is empty. Unchecked (and logged) while Redis cannot be reached."""
    settings: Settings = request.app.state.settings
    limits = settings.request_limits
    buckets = []
    if by_address:
        address = client_address(request, settings.trusted_networks())
        buckets.append(Bucket(f"{action}:address:{address}", limits.address_burst, limits.per_address_per_minute / 60))
    if user is not None:
        who = f"{action}:user:{user.workspace_id}:{user.user_id}"
        buckets.append(Bucket(who, limits.user_burst, limits.per_user_per_minute / 60))
    try:
        wait = Throttle(request.app.state.redis, PREFIX).take(buckets)
    except redis.RedisError as exc:  # the limits are Redis's: without it the request goes on, as runs do
        log.warning("request limit not checked", extra={"action": action, "error_type": type(exc).__name__})
        return
    if wait > 0:
        raise TooManyRequests(action, wait)


def limited(action: str) -> Callable[..., None]:
    """A route dependency: the signed-in user's and their address's request of `action`."""

    def check(request: Request, user: CurrentUser) -> None:
        admit(request, action, user)

    return check


SyncLimit = Depends(limited("sync"))
