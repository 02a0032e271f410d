"""`synchub sync`: one connection's runs worked in this process, with a progress bar from the provider's totals."""

from __future__ import annotations

import time
import uuid

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.registry import available, capabilities_of
from core.models import Connection
from core.settings import Settings
from sync.checkpoints import stream_key
from sync.engine import SyncEngine
from sync.models import NO_RESOURCE, RunStatus, SyncRun
from sync.runtime import Runtime
from sync.wiring import build_engine

POLL_SECONDS = 0.5
# Work in short slices, reading the run's progress between them: one slice of the workers' whole time budget
# left the bar still until the run ended.
SLICE_SECONDS = 0.5


class ForegroundError(Exception):
    """The sync cannot run; the message says why."""


def sync_in_foreground(settings: Settings, connection_id: uuid.UUID, only: str | None) -> int:
    rt = Runtime.build(settings)
    sync_engine = build_engine(rt)
    with rt.sessions() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise ForegroundError(f"no connection {connection_id}")
        names = runnable(settings, connection, only)
    console = Console(stderr=True)
    failures = 0
    streams = [(c, key) for c in names for key in sync_engine.streams(connection_id, c) or [NO_RESOURCE]]
    for capability, key in streams:
        name = stream_key(capability, key)
        run_id = sync_engine.request(connection_id, capability, "cli", key)
        if run_id is None:
            console.print(f"{name}: not run (the connection is not active, or access was not granted)")
            failures += 1
            continue
        run = work(rt, sync_engine, run_id, name, console)
        console.print(
            f"{name}: {run.status} · {run.records_created} new, {run.records_updated} changed, "
            f"{run.records_deleted} deleted · {run.api_calls} API calls" + (f" · {run.error}" if run.error else "")
        )
        failures += run.status != RunStatus.SUCCEEDED.value
    return 1 if failures else 0


def runnable(settings: Settings, connection: Connection, only: str | None) -> list[str]:
    """The capabilities to sync, or ForegroundError saying why there are none."""
    offered = capabilities_of(settings, connection.auth_provider)
    could = sorted(slug for slug, spec in available().items() if spec.auth_provider == connection.auth_provider)
    if not settings.connectors:
        raise ForegroundError(
            "no connector is enabled, so there is nothing to sync: set SYNCHUB_CONNECTORS "
            f"(for this {connection.auth_provider} connection: {', '.join(could) or 'none is installed'})"
        )
    if not offered:
        raise ForegroundError(
            f"no enabled connector syncs {connection.auth_provider} connections "
            f"(SYNCHUB_CONNECTORS is {','.join(settings.connectors)}; add {' or '.join(could) or 'one'})"
        )
    if only is not None and only not in offered:
        raise ForegroundError(f"{only} is not an enabled capability here; enabled: {', '.join(sorted(offered))}")
    names = [only] if only else [name for name in connection.capabilities if name in offered]
    if not names:
        raise ForegroundError(f"the account granted none of {', '.join(sorted(offered))}: connect it again to grant")
    return names


def work(rt: Runtime, sync_engine: SyncEngine, run_id: uuid.UUID, name: str, console: Console) -> SyncRun:
    columns = (TextColumn(f"{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(name, total=None)
        while True:
            outcome = sync_engine.execute(run_id, budget_seconds=SLICE_SECONDS)
            with rt.sessions() as session:
                run = session.get_one(SyncRun, run_id)
            progress.update(task, completed=run.progress_done, total=run.progress_total)
            if run.status in (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value):
                return run
            if outcome.action in ("retry", "waiting"):
                console.print(f"{name}: waiting {outcome.countdown:.0f}s ({run.error})")
                time.sleep(outcome.countdown)
            elif outcome.action == "skipped":
                time.sleep(POLL_SECONDS)
