"""Code that runs in spawned processes during token tests (it must be importable by a fresh interpreter)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from sync.runtime import Runtime
from sync.wiring import build_engine
from tests.conftest import settings_from_env
from token_vault.fresh import FreshTokens


def fresh_tokens(env: dict[str, str], lock_ttl: float | None = None) -> FreshTokens:
    settings = settings_from_env(env)  # leaves this process's environment as it was
    rt = Runtime.build(settings, pool_size=4, max_overflow=0)  # 8 such processes stay under 100 connections
    fresh = build_engine(rt).fresh
    if lock_ttl is not None:
        fresh.lock_ttl = lock_ttl
    return fresh


def hammer(env: dict[str, str], connection_id: str, threads: int, start: Barrier, results: Queue[Any]) -> None:
    """Call get() from `threads` threads at once, after every process is ready; report tokens or errors."""
    fresh = fresh_tokens(env)
    target = uuid.UUID(connection_id)

    def one(_: int) -> tuple[str, str]:
        try:
            return ("token", fresh.get(target))
        except Exception as exc:  # reported to the test, which fails on it
            return ("error", f"{type(exc).__name__}: {exc}")

    start.wait(timeout=60)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(one, range(threads)))
    results.put(outcomes)


def hold_refresh_lock(env: dict[str, str], connection_id: str, lock_ttl: float, holding: Event) -> None:
    """Take the refresh lock as a refresh would, then hang inside the token call until killed."""
    fresh = fresh_tokens(env, lock_ttl)

    def hang(*_: object) -> Any:
        holding.set()
        threading.Event().wait()  # inside the token call, holding the lock, until the test kills this process
        raise AssertionError("should have been killed")

    fresh.refresher = hang
    fresh.margin = timedelta(days=365)  # every stored token counts as stale, so get() goes to refresh
    fresh.get(uuid.UUID(connection_id))
