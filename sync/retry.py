"""The one retry policy: brief in-place retries of transient failures, then Celery countdowns."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

from redis import RedisError
from sqlalchemy.exc import DBAPIError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from core.errors import RateLimited, Retryable
from core.settings import CelerySettings

T = TypeVar("T")
IN_PLACE_ATTEMPTS = 3
IN_PLACE_SECONDS = 2.0
LONGEST_WAIT_SECONDS = 3600.0
SHORTEST_WAIT_SECONDS = 0.05
START_RETRIES = 4
START_RETRY_BASE_SECONDS = 0.5
# What fails a worker's own transactions or lock, not the provider: the database (a lost connection, a
# serialization failure, an error raised inside it) or Redis. The transaction rolled back, so trying again is safe.
INFRASTRUCTURE_ERRORS = (DBAPIError, RedisError)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, Retryable) and not isinstance(exc, RateLimited)


def _reraise(state: RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()


def in_place(call: Callable[[], T]) -> T:
    """Retry a transient failure at most twice within about two seconds; rate limits go straight up."""
    retrying = Retrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(IN_PLACE_ATTEMPTS) | stop_after_delay(IN_PLACE_SECONDS),
        wait=wait_random_exponential(multiplier=0.2, max=1.0),
        retry_error_callback=_reraise,
        reraise=True,
    )
    return retrying(call)


def countdown(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: the provider's Retry-After, else exponential back-off with jitter."""
    if retry_after is not None:
        return min(cap, max(1.0, retry_after))
    return float(min(cap, base * 2 ** max(0, attempt - 1) * random.uniform(1.0, 1.5)))


def start_countdown(attempt: int) -> float:
    """Seconds before a run whose worker could not start it is sent again: about 0.5, 1, 2 and 4 s."""
    return countdown(attempt, START_RETRY_BASE_SECONDS, LONGEST_WAIT_SECONDS)


def longest_countdown(limits: CelerySettings) -> float:
    """The longest wait handed to Celery as a countdown: 10 minutes at most, and short enough that the
    message is not redelivered while it waits (below visibility_timeout minus the task time limit)."""
    return float(min(limits.max_countdown, 600, limits.visibility_timeout - limits.task_time_limit - 1))
