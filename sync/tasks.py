"""Thin Celery tasks; the work lives in the modules they call."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from sqlalchemy import text

from core.settings import get_settings
from sync.celery_app import make_celery
from sync.retention import enforce_retention
from sync.runtime import runtime
from sync.wiring import engine

app = make_celery(get_settings())


@app.task(name="synchub.maintenance.ping")
def ping() -> dict[str, Any]:
    """Answer from inside a worker with what that worker can reach."""
    rt = runtime()
    with rt.engine.connect() as connection:
        database = connection.execute(text("select 1")).scalar() == 1
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "database": database,
        "redis": bool(rt.redis.ping()),
    }


@app.task(name="synchub.sync.run")
def run_sync(run_id: str) -> str:
    """Work on one sync run for a time budget, then hand it to the next task (same run, from its checkpoint)."""
    outcome = engine().execute(uuid.UUID(run_id))
    if outcome.action == "continue":
        run_sync.apply_async((run_id,))
    elif outcome.action == "retry":
        run_sync.apply_async((run_id,), countdown=outcome.countdown)
    return outcome.action


def enqueue(run_id: uuid.UUID | None) -> None:
    if run_id is not None:
        run_sync.apply_async((str(run_id),))


@app.task(name="synchub.maintenance.enforce_retention")
def enforce_retention_task() -> dict[str, int]:
    rt = runtime()
    return {"connections_erased": enforce_retention(rt.sessions, rt.settings.retention_days)}
