"""Thin Celery tasks; the work lives in the modules they call."""

from __future__ import annotations

import inspect
import logging
import os
import socket
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from celery import Task, signals
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from core import logs
from core.db import transaction
from core.logsafe import safe_exception
from core.settings import get_settings
from sync import channels, retry
from sync.celery_app import make_celery
from sync.dispatch import BATCH_TASK, RUN_TASK, claim_again, hand_over, hand_over_batches, leave_to_tick, still_in_batch
from sync.engine import Outcome
from sync.erasure import retry_owed
from sync.retention import enforce_retention, expire_tombstones, purge_cancelled_workspaces
from sync.runtime import runtime
from sync.schedule import missing_schedules, tick
from sync.wiring import engine
from token_vault.keeper import renew_due
from token_vault.vault import key_ring

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
def run_sync(self: Task, run_id: str, prepaid: bool = False) -> str:
    """Work on one sync run for a time budget, then hand it to the next task (same run, from its checkpoint).
    `prepaid`: the run comes back at the moment its reserved rate-limit token is due, and spends it."""
    sessions = runtime().sessions
    try:
        outcome = engine().execute(uuid.UUID(run_id), prepaid=prepaid)
    except retry.INFRASTRUCTURE_ERRORS as exc:
        return not_started(self, sessions, uuid.UUID(run_id), exc)
    return after_slice(sessions, uuid.UUID(run_id), outcome)


def after_slice(sessions: sessionmaker[Session], run_id: uuid.UUID, outcome: Outcome) -> str:
    """Send what a slice leaves to do: the run's next slice (now or after a countdown) and its follow-up run."""
    if outcome.action == "continue":
        hand_over(sessions, app, run_id)
    elif outcome.action == "retry":
        hand_over(sessions, app, run_id, countdown=outcome.countdown, prepaid=outcome.prepaid)
    if outcome.follow_up is not None:
        hand_over(sessions, app, outcome.follow_up)
    return outcome.action


@app.task(name=BATCH_TASK)
def run_batch(run_ids: list[str], sent_at: str) -> dict[str, int]:
    """Work on the runs one tick sent together, one after another, within one task's time budget. Only runs still
    under the batch's stamp are worked on, so a batch delivered again (its worker was killed) skips what finished
    or moved on and resumes the run it was on from its checkpoint. Runs left when the budget is spent go on in a
    batch of their own; a run whose start failed goes on in a message of its own, with that task's retries."""
    rt = runtime()
    stamp = datetime.fromisoformat(sent_at)
    todo = still_in_batch(rt.sessions, [uuid.UUID(run_id) for run_id in run_ids], stamp)
    deadline = time.monotonic() + rt.settings.celery.sync_time_budget
    actions: Counter[str] = Counter()
    for index, run_id in enumerate(todo):
        left = deadline - time.monotonic()
        if left <= 0:
            rest, again = claim_again(rt.sessions, todo[index:], stamp)
            actions["rebatched"] += hand_over_batches(rt.sessions, app, rest, again) if rest else 0
            break
        try:
            outcome = engine().execute(run_id, budget_seconds=left)
        except retry.INFRASTRUCTURE_ERRORS as exc:
            log.error("a sync run could not be started: %s", safe_exception(exc), extra={"run_id": str(run_id)})
            hand_over(rt.sessions, app, run_id, countdown=retry.start_countdown(1))
            actions["not_started"] += 1
            continue
        actions[after_slice(rt.sessions, run_id, outcome)] += 1
    return dict(actions)


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
        rt.sessions,
        rt.settings,
        lambda run_ids, stamp: hand_over_batches(rt.sessions, app, run_ids, stamp),
        sync.worked_on,
    )
    return report.as_dict()


@app.task(name="synchub.maintenance.reconcile_schedules")
def reconcile_schedules_task() -> dict[str, int]:
    """Give any stream that has none its schedule, due now (it reads every active connection, so not every tick)."""
    rt = runtime()
    with transaction(rt.sessions) as session:
        missing_schedules(session, rt.settings)
    return {}


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


@app.task(name="synchub.maintenance.purge_cancelled_workspaces")
def purge_cancelled_workspaces_task() -> dict[str, int]:
    """Delete the data of the workspaces cancelled longer ago than the retention period."""
    rt = runtime()
    return purge_cancelled_workspaces(engine(), key_ring(rt.settings.vault), rt.settings.retention_days)


@app.task(name="synchub.maintenance.retry_provider_undos")
def retry_provider_undos_task() -> dict[str, int]:
    """Try again the revokes, unsubscribes and channel stops erases still owe, as each is due."""
    return retry_owed(engine(), key_ring(runtime().settings.vault))
