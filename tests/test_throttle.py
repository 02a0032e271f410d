"""The shared rate limiter against the real Redis: bucket arithmetic, atomicity across buckets and workers, pauses."""

from __future__ import annotations

import itertools
import math
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import sync.throttle as throttle_module
from sync.throttle import Bucket, Throttle
from tests.conftest import wait_for

SLOW = 0.001  # tokens per second: nothing refills within a test


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def throttle(client: redis.Redis) -> Throttle:
    return Throttle(client, prefix=f"test:{uuid.uuid4().hex[:8]}:")


def takes(throttle: Throttle, buckets: list[Bucket], attempts: int) -> int:
    """How many of `attempts` immediate takes were granted."""
    return sum(throttle.take(buckets) == 0.0 for _ in range(attempts))


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1_000_000


def test_capacity_then_wait(throttle: Throttle, client: redis.Redis) -> None:
    bucket = Bucket("app:google:abc", capacity=5, rate=0.5)
    assert [throttle.take([bucket]) for _ in range(5)] == [0.0] * 5
    first = throttle.take([bucket])
    assert 1.0 < first <= 2.001  # about 1/rate, less what refilled during the five takes
    second = throttle.take([bucket])
    assert 0 < second <= first + 0.001  # the refused take consumed nothing
    ttl = client.pttl(f"{throttle.prefix}app:google:abc")
    assert 0 < ttl <= (5 / 0.5 + 60) * 1000  # idle buckets vanish once full again


def test_refill_follows_rate(throttle: Throttle) -> None:
    bucket = Bucket("fast", capacity=1, rate=20)
    assert throttle.take([bucket]) == 0.0
    wait = throttle.take([bucket])
    assert 0 < wait <= 0.051
    wait_for(lambda: throttle.take([bucket]) == 0.0, timeout=wait + 2, what="the bucket to refill")


def test_empty_list_takes_nothing(throttle: Throttle) -> None:
    assert throttle.take([]) == 0.0


@pytest.mark.parametrize("empty_first", [False, True])
def test_all_buckets_or_none(throttle: Throttle, empty_first: bool) -> None:
    app = Bucket("app:google:abc", capacity=3, rate=SLOW)
    connection = Bucket("connection:1", capacity=1, rate=SLOW)
    assert throttle.take([app, connection]) == 0.0  # app 2 left, connection 0 left
    named = [connection, app] if empty_first else [app, connection]
    for _ in range(5):
        assert throttle.take(named) > 100  # the connection bucket waits ~1/SLOW seconds
    assert takes(throttle, [app], 5) == 2  # the refused takes left the app bucket's tokens alone


def test_duplicate_bucket_counts_once(throttle: Throttle) -> None:
    bucket = Bucket("dup", capacity=2, rate=SLOW)
    assert throttle.take([bucket, bucket]) == 0.0
    assert takes(throttle, [bucket], 3) == 1
    with pytest.raises(ValueError, match="different limits"):
        throttle.take([bucket, Bucket("dup", capacity=3, rate=SLOW)])


def test_changed_limits_apply_at_once(throttle: Throttle) -> None:
    assert takes(throttle, [Bucket("k", capacity=10, rate=SLOW)], 1) == 1
    assert takes(throttle, [Bucket("k", capacity=3, rate=SLOW)], 10) == 3  # 9 left, clipped to the new capacity
    assert throttle.take([Bucket("k", capacity=3, rate=SLOW)]) > 100
    assert throttle.take([Bucket("k", capacity=3, rate=1000)]) <= 0.002  # a faster rate shortens the wait at once


def test_pause_blocks_every_set_and_takes_nothing(throttle: Throttle) -> None:
    app = Bucket("app:google:abc", capacity=2, rate=SLOW)
    connection = Bucket("connection:1", capacity=5, rate=SLOW)
    assert throttle.pause("connection:1", 3) == 3.0
    for _ in range(5):
        assert throttle.take([app, connection]) >= 2.5
        assert throttle.take([connection]) >= 2.5
    assert 2.5 <= throttle.paused_for("connection:1") <= 3.0
    assert throttle.paused_for("app:google:abc") == 0.0

    assert throttle.pause("connection:1", 1) >= 2.5  # a shorter pause does not shorten the one in force
    assert throttle.paused_for("connection:1") >= 2.5
    assert throttle.pause("connection:1", 0) >= 2.5
    assert throttle.pause("connection:1", 10) == 10.0  # a longer one extends it
    assert 9.5 <= throttle.paused_for("connection:1") <= 10.0

    assert takes(throttle, [app], 5) == 2  # the paused takes consumed nothing from the app bucket
    throttle.clear("connection:1")
    assert throttle.paused_for("connection:1") == 0.0
    assert takes(throttle, [connection], 10) == 5  # nor from the paused bucket itself


def test_pause_expires(throttle: Throttle) -> None:
    bucket = Bucket("short", capacity=1, rate=SLOW)
    throttle.pause("short", 0.2)
    assert 0 < throttle.take([bucket]) <= 0.2
    wait_for(lambda: throttle.paused_for("short") == 0.0, timeout=2, what="the pause to expire")
    assert throttle.take([bucket]) == 0.0


def test_backoff_doubles_up_to_cap(throttle: Throttle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle_module, "_jitter", lambda: 1.0)  # the top of every jitter range
    pauses = [throttle.backoff("b", base=1.0, cap=64.0) for _ in range(9)]
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 64.0, 64.0]
    assert throttle.paused_for("b") > 63
    strikes_ttl = throttle.client.pttl(f"{throttle.prefix}b:strikes")
    assert 630_000 < strikes_ttl <= 640_000  # strikes are forgotten after 10 * cap of quiet
    throttle.clear("b")
    assert throttle.backoff("b", base=1.0, cap=64.0) == 1.0  # clear dropped the strikes


def test_backoff_jitters_within_cap(throttle: Throttle) -> None:
    firsts, lasts = [], []
    for n in range(8):
        runs = [throttle.backoff(f"j{n}", base=2.0, cap=16.0) for _ in range(8)]
        assert all(0 < pause <= 16.0 for pause in runs)
        assert all(later > earlier - 0.5 for earlier, later in itertools.pairwise(runs))  # the pause never shrinks
        firsts.append(runs[0])
        lasts.append(runs[-1])
    assert all(pause <= 2.0 for pause in firsts)  # first strike: within base
    assert len(set(firsts)) > 1 and len(set(lasts)) > 1  # jittered, not lock-step
    assert sum(lasts) > 2 * sum(firsts)  # grows over the strikes


@pytest.mark.parametrize(
    ("capacity", "rate", "named"),
    [
        (0.5, 1.0, "capacity"),
        (0, 1.0, "capacity"),
        (math.inf, 1.0, "capacity"),
        (5, 0.0, "rate"),
        (5, -1.0, "rate"),
        (5, math.nan, "rate"),
    ],
)
def test_bucket_rejects_bad_limits(capacity: float, rate: float, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Bucket("k", capacity=capacity, rate=rate)


def test_per_minute() -> None:
    assert Bucket.per_minute("k", 600) == Bucket("k", capacity=30, rate=9.5), "no sliding minute exceeds 600"
    assert Bucket.per_minute("k", 10) == Bucket("k", capacity=1, rate=9 / 60)
    assert Bucket.per_minute("k", 600, burst_share=0.5).capacity == 300
    with pytest.raises(ValueError, match="per_minute"):
        Bucket.per_minute("k", 0)
    with pytest.raises(ValueError, match="burst_share"):
        Bucket.per_minute("k", 60, burst_share=2)


def test_rejects_bad_arguments(throttle: Throttle) -> None:
    with pytest.raises(ValueError, match="seconds"):
        throttle.pause("k", -1)
    with pytest.raises(ValueError, match="seconds"):
        throttle.pause("k", math.nan)
    with pytest.raises(ValueError, match="base"):
        throttle.backoff("k", base=0)
    with pytest.raises(ValueError, match="cap"):
        throttle.backoff("k", cap=-1)
    with pytest.raises(ValueError, match="empty"):
        Bucket("", capacity=1, rate=1)
    with pytest.raises(ValueError, match="empty"):
        throttle.paused_for("")
    assert throttle.paused_for("k") == 0.0  # nothing was set by the refused calls


CAPACITY, RATE, SECONDS, PROCESSES, THREADS = 5, 10.0, 2.0, 8, 4


def _hammer(redis_url: str, prefix: str, barrier: Any, results: Any) -> None:
    """One worker process: THREADS threads taking from one bucket for SECONDS, without pausing."""
    client = redis.Redis.from_url(redis_url)
    throttle = Throttle(client, prefix=prefix)
    bucket = Bucket("shared", capacity=CAPACITY, rate=RATE)
    counts = [[0, 0] for _ in range(THREADS)]

    def run(slot: list[int]) -> None:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            slot[0 if throttle.take([bucket]) == 0.0 else 1] += 1

    threads = [threading.Thread(target=run, args=(slot,)) for slot in counts]
    barrier.wait(timeout=120)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((sum(c[0] for c in counts), sum(c[1] for c in counts), redis_now(client)))
    client.close()


@pytest.mark.slow
def test_concurrent_workers_never_overdraw(redis_url: str, client: redis.Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1)
    results = context.Queue()
    workers = [context.Process(target=_hammer, args=(redis_url, prefix, barrier, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    try:
        started = redis_now(client)  # before the barrier opens, so before any take
        barrier.wait(timeout=120)
        reports = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert all(worker.exitcode == 0 for worker in workers)
    granted = sum(report[0] for report in reports)
    refused = sum(report[1] for report in reports)
    elapsed = max(report[2] for report in reports) - started
    assert refused > granted  # the bucket really was contended
    assert granted <= CAPACITY + RATE * elapsed + 1, (granted, elapsed)
    assert granted >= CAPACITY + RATE * SECONDS * 0.5, (granted, elapsed)  # and it did keep granting
