"""Thin Celery tasks; the work lives in the modules they call."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import text

from core.settings import get_settings
from sync.celery_app import make_celery
from sync.retention import enforce_retention
from sync.runtime import runtime

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


@app.task(name="synchub.maintenance.enforce_retention")
def enforce_retention_task() -> dict[str, int]:
    rt = runtime()
    return {"connections_erased": enforce_retention(rt.sessions, rt.settings.retention_days)}
