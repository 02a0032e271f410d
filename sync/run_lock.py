"""A run's lock in Redis: one worker at a time works on a run, and a killed worker's run is free within its TTL.

The holder renews the lock every third of its TTL from a background thread while the run works, so the TTL can be
short (seconds) whatever a page or a task takes. A holder that lost its lock (it expired while the process was
stopped, or Redis restarted empty) learns it at its next `check()`, which raises, and stops writing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockNotOwnedError, RedisError
from redis.lock import Lock

log = logging.getLogger(__name__)

PREFIX = "synchub:run:"


def key(run_id: object) -> str:
    return f"{PREFIX}{run_id}"


def held(client: redis.Redis, run_id: object) -> bool:
    """Whether some worker holds this run's lock right now."""
    return bool(client.exists(key(run_id)))


class RunLock:
    """A held run lock and the thread renewing it; `check()` raises LockNotOwnedError once it is lost."""

    def __init__(self, lock: Lock, ttl: float) -> None:
        self.lock, self.ttl = lock, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="run-lock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def check(self) -> None:
        """Renew now, raising LockNotOwnedError if another worker may have the run: write nothing more then."""
        self.lock.extend(self.ttl, replace_ttl=True)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.check()
            except LockNotOwnedError:
                log.warning("a run's lock was lost while its worker worked on it", extra={"lock": self.lock.name})
                return
            except RedisError:
                continue  # Redis is away for a moment: the next renewal (or the worker's next check) decides

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.lock.release()
        except LockNotOwnedError:
            pass  # expired or taken over: nothing of ours to release
        except RedisError as exc:
            log.warning("could not release a run's lock: %s", type(exc).__name__, extra={"lock": self.lock.name})


@contextmanager
def hold(client: redis.Redis, run_id: object, ttl: float) -> Iterator[RunLock | None]:
    """The run's lock, renewed while the block runs and released after it; None when another worker holds it."""
    lock = client.lock(key(run_id), timeout=ttl, thread_local=False)
    if not lock.acquire(blocking=False):
        yield None
        return
    renewed = RunLock(lock, ttl)
    renewed.start()
    try:
        yield renewed
    finally:
        renewed.release()
