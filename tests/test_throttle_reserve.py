"""Reserving a token of the shared rate limit against the real Redis: callers that find the buckets empty queue in
the order they came, each told exactly when its own token is due, and a paused bucket or a token due too late
reserves nothing."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
import redis

from sync.throttle import Bucket, Throttle

RATE = 10.0  # tokens per second: one every 0.1 s


@pytest.fixture
def throttle(redis_url: str) -> Iterator[Throttle]:
    client = redis.Redis.from_url(redis_url)
    yield Throttle(client, prefix=f"test:{uuid.uuid4().hex[:8]}:")
    client.close()


def test_callers_that_find_the_bucket_empty_are_released_in_order_one_token_apart(throttle: Throttle) -> None:
    app, mine = Bucket("app", capacity=2, rate=RATE), Bucket("mine", capacity=100, rate=100.0)
    assert [throttle.reserve([app, mine], within=5) for _ in range(2)] == [(0.0, False)] * 2, "the burst, at once"
    queued = [throttle.reserve([app, mine], within=5) for _ in range(5)]
    assert all(reserved for _, reserved in queued)
    waits = [wait for wait, _ in queued]
    assert 0.05 < waits[0] < 0.11
    steps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    assert all(0.05 < step < 0.11 for step in steps), waits  # each one token after the one before it

    too_late, reserved = throttle.reserve([app, mine], within=0.2)
    assert not reserved and too_late > 0.5, "due later than the caller can wait: nothing is taken"
    after, reserved = throttle.reserve([app, mine], within=5)
    assert reserved and 0 < after - waits[-1] < 0.11, "the refused caller took no place in the queue"
    assert throttle.take([app, mine]) > 0.5, "a plain take never goes into debt"


def test_a_paused_bucket_reserves_nothing(throttle: Throttle) -> None:
    app = Bucket("paused-app", capacity=5, rate=RATE)
    throttle.pause(app.key, 2.0)
    wait, reserved = throttle.reserve([app], within=60)
    assert not reserved and 1.5 < wait <= 2.0
    throttle.clear(app.key)
    assert [throttle.reserve([app], within=60) for _ in range(5)] == [(0.0, False)] * 5, "no token was spent"
