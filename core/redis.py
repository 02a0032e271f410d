"""The one Redis client factory."""

from __future__ import annotations

from functools import lru_cache

import redis

REDIS_TIMEOUT_SECONDS = 5.0


@lru_cache(maxsize=8)
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
