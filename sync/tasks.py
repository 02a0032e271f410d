"""Thin Celery tasks; the work lives in the modules they call."""

from __future__ import annotations

import inspect
import logging
import os
import socket
import uuid
from typing import Any

from celery import Task, signals
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from core import logs
from core.logsafe import safe_exception
from core.settings import get_settings
from sync import channels, retry
from sync.celery_app import make_celery
from sync.dispatch import RUN_TASK, hand_over, leave_to_tick
from sync.retention import enforce_retention, expire_tombstones
from sync.runtime import runtime
from sync.schedule import tick
from sync.wiring import engine
from token_vault.keeper import renew_due

log = logging.getLogger(__name__)
app = make_celery(get_settings())
_bound: dict[str, logs.Bound] = {}


@signals.task_prerun.connect
def _bind_task(task_id: str, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], **_: Any) -> None:
    """Every line a task logs, Celery's own "succeeded" line included, carries the task, its id, and the task's
    arguments that are log fields (a run's id)."""
    try:
        named = inspect.signature(task.run).bind_partial(*args, **kwargs).arguments
    except TypeError:
        named = {}
    fields = {name: value for name, value in named.items() if name in logs.FIELDS and isinstance(value, str)}
    _bound[task_id] = logs.bind(**fields, task=task.name, task_id=task_id)


@signals.task_postrun.connect
def _unbind_task(task_id: str, **_: Any) -> None:
    bound = _bound.pop(task_id, None)
    if bound is not None:
        bound.reset()


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


@app.task(name=RUN_TASK, bind=True, max_retries=retry.START_RETRIES)
def run_sync(self: Task, run_id: str) -> str:
    """Work on one sync run for a time budget, then hand it to the next task (same run, from its checkpoint)."""
    sessions = runtime().sessions
    try:
        outcome = engine().execute(uuid.UUID(run_id))
    except retry.INFRASTRUCTURE_ERRORS as exc:
        return not_started(self, sessions, uuid.UUID(run_id), exc)
    if outcome.action == "continue":
        hand_over(sessions, app, uuid.UUID(run_id))
    elif outcome.action == "retry":
        hand_over(sessions, app, uuid.UUID(run_id), countdown=outcome.countdown)
    if outcome.follow_up is not None:
        hand_over(sessions, app, outcome.follow_up)
    return outcome.action


def not_started(task: Task, sessions: sessionmaker[Session], run_id: uuid.UUID, failure: BaseException) -> str:
    """The database or Redis failed the run's start (or a write that ends a slice, which resumes from its checkpoint):
    send it again within seconds, a few times; then leave it to the next tick, queued and unsent."""
    log.error(
        "a sync run could not be started: %s",
        safe_exception(failure),
        extra={"run_id": str(run_id), "retries": task.request.retries},
    )
    if task.request.retries < retry.START_RETRIES:
        try:
            task.retry(countdown=retry.start_countdown(task.request.retries + 1), throw=False)
            return "retry"
        except Exception:
            log.exception("could not send the run again; leaving it to the tick", extra={"run_id": str(run_id)})
    leave_to_tick(sessions, run_id)
    return "left_to_tick"


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


@app.task(name="synchub.maintenance.renew_channels")
def renew_channels_task() -> dict[str, int]:
    """Renew the push channels that expire within their connector's margin (new opened before old stopped)."""
    return channels.renew_due(engine())


@app.task(name="synchub.maintenance.enforce_retention")
def enforce_retention_task() -> dict[str, int]:
    rt = runtime()
    return {
        "connections_erased": enforce_retention(rt.sessions, rt.settings.retention_days),
        "tombstones_expired": expire_tombstones(rt.sessions, rt.settings.retention_days),
    }
