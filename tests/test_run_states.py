"""A run changes status in one place, `SyncRun.move_to`, and an ended run never starts again."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from sync.models import RunEnded, RunStatus, SyncRun
from tests.conftest import ROOT

ENDED = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED]


def run_in(status: RunStatus) -> SyncRun:
    return SyncRun(id=uuid.uuid4(), connection_id=uuid.uuid4(), capability="c", status=status.value, error="before")


@pytest.mark.parametrize("ended", ENDED)
@pytest.mark.parametrize("target", list(RunStatus))
def test_an_ended_run_moves_nowhere(ended: RunStatus, target: RunStatus) -> None:
    run = run_in(ended)
    with pytest.raises(RunEnded):
        run.move_to(target)
    assert run.status == ended.value and run.error == "before"


def test_moves_stamp_what_they_mean() -> None:
    run = run_in(RunStatus.QUEUED)
    run.move_to(RunStatus.RUNNING)
    assert run.started_at is not None and run.heartbeat_at is not None and run.error == "before"
    started = run.started_at
    run.move_to(RunStatus.QUEUED, "will retry: Google answered 503")
    run.move_to(RunStatus.RUNNING)
    assert run.started_at == started and run.error == "will retry: Google answered 503"
    run.move_to(RunStatus.SUCCEEDED)
    assert run.finished_at is not None and run.error is None


def is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def status_writes(path: Path) -> list[int]:
    """Lines that set a run's `status` other than through move_to: an assignment or an UPDATE's values."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else []
        flat = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
        if any(isinstance(t, ast.Attribute) and t.attr == "status" and not is_self(t.value) for t in flat):
            lines.append(node.lineno)
        is_values = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "values"
        if is_values and any(keyword.arg == "status" for keyword in node.keywords):
            lines.append(node.lineno)
    return lines


OWN_STATUSES = {
    ROOT / "sync" / "models.py",  # move_to itself
    ROOT / "webhooks" / "inbox.py",  # the webhook inbox sets its deliveries' statuses, never a run's
}


def test_no_code_outside_move_to_sets_a_run_status() -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for package in ("sync", "hub", "crm", "connectors", "webhooks")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in OWN_STATUSES and (lines := status_writes(path))
    }
    assert found == {}
