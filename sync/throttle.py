"""The shared rate limiter: Redis token buckets taken atomically by one Lua script, plus a shared pause.

Every bucket is a Redis hash ``prefix+key`` (``tokens``, ``ts`` in microseconds of Redis ``TIME``); a 429 sets
``prefix+key+":pause"`` (a key with a PX expiry) that every worker honours; ``backoff`` keeps its strike counter in
``prefix+key+":strikes"``. Capacity and rate travel with each call, so a changed limit applies at once. Nothing here
sleeps: a caller that is told to wait reschedules itself.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

# KEYS: bucket_1, pause_1, bucket_2, pause_2, ...   ARGV: capacity_1, rate_1, capacity_2, rate_2, ..., reserve ms
# Returns 0 when one token was taken from every bucket. Otherwise, when no bucket is paused and the token is due
# within `reserve` ms, it is taken all the same (the buckets go into debt, so later callers queue behind it) and
# minus the milliseconds until it is due are returned; else the milliseconds to wait (and nothing was taken).
TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = math.floor(#KEYS / 2)
local reserve = tonumber(ARGV[2 * n + 1] or '0') or 0
local wait, paused, left = 0, 0, {}
for i = 1, n do
  local pttl = redis.call('PTTL', KEYS[2 * i])
  if pttl > paused then paused = pttl end
  local cap, rate = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local h = redis.call('HMGET', KEYS[2 * i - 1], 'tokens', 'ts')
  local tokens, ts = tonumber(h[1]), tonumber(h[2])
  if tokens == nil or ts == nil then tokens, ts = cap, now end
  if now > ts then tokens = tokens + (now - ts) * rate / 1000000 end
  tokens = math.min(cap, tokens)
  left[i] = tokens
  if tokens < 1 then wait = math.max(wait, (1 - tokens) * 1000 / rate) end
end
if paused > 0 then return math.max(paused, math.ceil(wait)) end
if wait > 0 and (reserve <= 0 or wait > reserve) then return math.ceil(wait) end
for i = 1, n do
  local cap, rate = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[2 * i - 1], 'tokens', string.format('%.17g', left[i] - 1), 'ts', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[2 * i - 1], string.format('%.0f', math.ceil(((cap - left[i] + 1) / rate + 60) * 1000)))
end
if wait > 0 then return -math.ceil(wait) end
return 0
"""

# KEYS: pause   ARGV: milliseconds.  Returns the pause in force, in ms (never shortens a longer one).
PAUSE_LUA = """
local ms, cur = math.max(1, tonumber(ARGV[1])), redis.call('PTTL', KEYS[1])
if cur == -1 or (tonumber(ARGV[1]) > 0 and cur < ms) then
  redis.call('SET', KEYS[1], '1', 'PX', string.format('%.0f', ms))
  return ms
end
return math.max(cur, 0)
"""

# KEYS: pause, strikes   ARGV: base ms, cap ms, quiet ms, jitter in [0, 1].  Returns the pause in force, in ms.
BACKOFF_LUA = """
local base, cap, quiet, u = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local strikes = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], quiet)
local ms = math.max(1, math.ceil(math.min(cap, base * 2 ^ (strikes - 1)) * u))
local cur = redis.call('PTTL', KEYS[1])
if cur < ms then
  redis.call('SET', KEYS[1], '1', 'PX', string.format('%.0f', ms))
  return ms
end
return cur
"""


def _jitter() -> float:
    """A uniform draw in [0, 1) for full jitter (a seam for tests)."""
    return random.random()


def _finite(name: str, value: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Bucket:
    """One token bucket: `capacity` tokens of burst, refilled at `rate` tokens per second."""

    key: str
    capacity: float
    rate: float

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("bucket key must not be empty")
        if _finite("capacity", self.capacity) < 1:
            raise ValueError(f"bucket {self.key!r}: capacity must be >= 1 token, got {self.capacity!r}")
        if _finite("rate", self.rate) <= 0:
            raise ValueError(f"bucket {self.key!r}: rate must be > 0 tokens per second, got {self.rate!r}")

    @classmethod
    def per_minute(cls, key: str, per_minute: float, burst_share: float = 0.05) -> Bucket:
        """A bucket for a per-minute quota: burst of at most `burst_share` of it (at least 1 token).

        The refill is the quota less the burst, so no sliding minute ever holds more than the quota:
        at most `capacity` tokens saved up plus `rate * 60` refilled.
        """
        if _finite("per_minute", per_minute) <= 0:
            raise ValueError(f"per_minute must be > 0, got {per_minute!r}")
        if not 0 <= _finite("burst_share", burst_share) <= 1:
            raise ValueError(f"burst_share must be between 0 and 1, got {burst_share!r}")
        capacity = max(1, math.floor(per_minute * burst_share))
        refill = per_minute - capacity if per_minute > capacity else per_minute
        return cls(key, capacity=capacity, rate=refill / 60)


class Throttle:
    """Token buckets and pauses shared by every worker through one Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "synchub:bucket:") -> None:
        self.client = client
        self.prefix = prefix
        self._take = client.register_script(TAKE_LUA)
        self._pause = client.register_script(PAUSE_LUA)
        self._backoff = client.register_script(BACKOFF_LUA)

    def _key(self, bucket_key: str, suffix: str = "") -> str:
        if not bucket_key:
            raise ValueError("bucket key must not be empty")
        return f"{self.prefix}{bucket_key}{suffix}"

    def take(self, buckets: Sequence[Bucket]) -> float:
        """Take one token from every bucket atomically; 0.0 if taken, else seconds to wait (nothing taken).

        A paused bucket answers its remaining pause. Uses Redis TIME inside the script as the clock.
        """
        return _seconds(self._run_take(buckets, 0.0))

    def reserve(self, buckets: Sequence[Bucket], within: float) -> tuple[float, bool]:
        """Take one token from every bucket, now or, when the buckets are empty, the next one due within `within`
        seconds: (seconds until it is due, True), and the caller makes its call then without taking again. Callers
        that find the buckets empty so queue in the order they came, each released when its own token is due,
        instead of all coming back at once to an empty bucket. A paused bucket (a 429), or a token due later than
        `within`, reserves nothing: (seconds to wait, False)."""
        raw = int(self._run_take(buckets, within))
        return (-raw / 1000, True) if raw < 0 else (_seconds(raw), False)

    def _run_take(self, buckets: Sequence[Bucket], within: float) -> Any:
        unique: dict[str, Bucket] = {}
        for bucket in buckets:
            seen = unique.setdefault(bucket.key, bucket)
            if seen != bucket:
                raise ValueError(f"bucket {bucket.key!r} named twice with different limits")
        if not unique:
            return 0
        keys: list[str] = []
        args: list[float] = []
        for bucket in unique.values():
            keys += [self._key(bucket.key), self._key(bucket.key, ":pause")]
            args += [float(bucket.capacity), float(bucket.rate)]
        return self._take(keys=keys, args=[*args, math.floor(_finite("within", within) * 1000)])

    def pause(self, bucket_key: str, seconds: float) -> float:
        """Pause a bucket for every worker for `seconds` (never shortens a longer pause); returns the pause in force."""
        if _finite("seconds", seconds) < 0:
            raise ValueError(f"pause seconds must be >= 0, got {seconds!r}")
        ms = math.ceil(seconds * 1000)
        return _seconds(self._pause(keys=[self._key(bucket_key, ":pause")], args=[ms]))

    def backoff(self, bucket_key: str, base: float = 1.0, cap: float = 64.0) -> float:
        """Pause for an exponential back-off with full jitter; returns the pause in force.

        For a throttle signal without Retry-After. The strike count lives in Redis and is forgotten after a quiet
        period of 10 * `cap` seconds.
        """
        if _finite("base", base) <= 0:
            raise ValueError(f"backoff base must be > 0 seconds, got {base!r}")
        if _finite("cap", cap) <= 0:
            raise ValueError(f"backoff cap must be > 0 seconds, got {cap!r}")
        keys = [self._key(bucket_key, ":pause"), self._key(bucket_key, ":strikes")]
        args = [base * 1000, cap * 1000, math.ceil(cap * 10_000), _jitter()]
        return _seconds(self._backoff(keys=keys, args=args))

    def paused_for(self, bucket_key: str) -> float:
        """Seconds left of the bucket's pause, 0.0 if none."""
        return _seconds(self.client.pttl(self._key(bucket_key, ":pause")))

    def clear(self, bucket_key: str) -> None:
        """Drop the bucket's tokens, pause and strikes."""
        self.client.delete(self._key(bucket_key), self._key(bucket_key, ":pause"), self._key(bucket_key, ":strikes"))


def _seconds(ms: Any) -> float:
    """A millisecond reply as seconds; negative replies (no key, no expiry) mean 0."""
    return max(0, int(ms)) / 1000
