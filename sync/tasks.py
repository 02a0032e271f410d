"""Thin Celery tasks; the work lives in the modules they call."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from sqlalchemy import text

from core.settings import get_settings
from sync.celery_app import make_celery
from sync.dispatch import RUN_TASK, hand_over
from sync.retention import enforce_retention
from sync.runtime import runtime
from sync.schedule import tick
from sync.wiring import engine
from token_vault.keeper import renew_due

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


@app.task(name=RUN_TASK)
def run_sync(run_id: str) -> str:
    """Work on one sync run for a time budget, then hand it to the next task (same run, from its checkpoint)."""
    sessions = runtime().sessions
    outcome = engine().execute(uuid.UUID(run_id))
    if outcome.action == "continue":
        hand_over(sessions, app, uuid.UUID(run_id))
    elif outcome.action == "retry":
        hand_over(sessions, app, uuid.UUID(run_id), countdown=outcome.countdown)
    if outcome.follow_up is not None:
        hand_over(sessions, app, outcome.follow_up)
    return outcome.action


@app.task(name="synchub.maintenance.tick")
def tick_task() -> dict[str, int]:
    """Start what is due, send what was never sent, and re-queue runs whose worker stopped reporting."""
    rt = runtime()
    sync = engine()
    report = tick(
        rt.sessions, rt.settings, sync.request, lambda run_id: hand_over(rt.sessions, app, run_id), sync.worked_on
    )
    return report.as_dict()


@app.task(name="synchub.maintenance.refresh_tokens")
def refresh_tokens_task() -> dict[str, object]:
    """Renew tokens that expire soon and touch idle grants; failures cool down, refusals mean reconnect."""
    rt = runtime()
    budget = max(5.0, rt.settings.celery.task_soft_time_limit - 10.0)
    return renew_due(rt.sessions, engine().fresh, rt.settings.vault, budget).as_dict()


@app.task(name="synchub.maintenance.enforce_retention")
def enforce_retention_task() -> dict[str, int]:
    rt = runtime()
    return {"connections_erased": enforce_retention(rt.sessions, rt.settings.retention_days)}
