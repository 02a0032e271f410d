"""Logs are one JSON object a line (or text, when set), with allow-listed fields only and exceptions described,
never quoted."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery.app.trace import LOG_FAILURE
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from core import logs
from tests.conftest import ROOT, Beat, clean_environ, wait_for
from tests.servers import free_port, kill_group, spawn
from tests.test_settings import run_cli

PRIVATE = "Philippa Quarrendon-Xyst"


def record_of(logger: str, message: str, *args: object, **kwargs: object) -> logging.LogRecord:
    """What `logger` hands its handlers for this call."""
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    log = logging.getLogger(logger)
    handler, propagate, level = Keep(), log.propagate, log.level
    log.addHandler(handler)
    log.propagate, log.level = False, logging.DEBUG
    try:
        log.info(message, *args, **kwargs)  # type: ignore[arg-type]
    finally:
        log.removeHandler(handler)
        log.propagate, log.level = propagate, level
    return kept[0]


def test_a_line_is_one_json_object_with_allow_listed_fields_only() -> None:
    record = record_of(
        "synchub.test",
        "page written: %d rows",
        3,
        extra={"run_id": "r-1", "count": 3, "email": "philippa@private-example.org", "password": "hunter2"},
    )
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert set(fields) == {"ts", "level", "logger", "message", "run_id", "count"}
    assert fields["message"] == "page written: 3 rows" and fields["level"] == "INFO"
    assert fields["logger"] == "synchub.test" and fields["ts"].endswith("Z")
    assert "philippa" not in line and "hunter2" not in line


def test_bound_fields_are_on_every_line_until_the_binding_ends() -> None:
    with logs.bind(run_id="r-2", connection_id="c-2"):
        logs.bind(capability="contacts")  # lasts until the enclosing binding ends
        inside = json.loads(logs.JsonFormatter().format(record_of("synchub.test", "inside")))
    after = json.loads(logs.JsonFormatter().format(record_of("synchub.test", "after")))
    assert (inside["run_id"], inside["connection_id"], inside["capability"]) == ("r-2", "c-2", "contacts")
    assert "run_id" not in after and "capability" not in after


def test_bind_refuses_a_field_that_is_not_allow_listed() -> None:
    with pytest.raises(ValueError, match="not a log field: email"):
        logs.bind(run_id="r-3", email="philippa@private-example.org")
    assert logs.bound() == {}


def test_a_database_error_is_described_without_the_row_it_quotes(engine: Engine) -> None:
    with engine.connect() as db:
        db.execute(text("CREATE TEMP TABLE refusing (name text CHECK (name <> 'Philippa Quarrendon-Xyst'))"))
        with pytest.raises(IntegrityError) as raised:
            db.execute(text("INSERT INTO refusing VALUES (:name)"), {"name": PRIVATE})
    error = raised.value
    assert PRIVATE in str(error), "PostgreSQL's DETAIL quotes the refused row"
    record = record_of("synchub.test", "page failed: %s", error, exc_info=(type(error), error, error.__traceback__))
    line = logs.JsonFormatter().format(record)
    fields = json.loads(line)
    assert PRIVATE not in line and "Quarrendon" not in line
    assert fields["error_type"] == "IntegrityError"
    assert "violates check constraint" in fields["exception"] and "test_logs.py" in fields["traceback"]
    assert "violates check constraint" in fields["message"]


def test_a_url_a_library_logs_has_its_tokens_blanked() -> None:
    record = record_of(
        "googleapiclient.discovery",
        "URL being requested: GET %s",
        "https://graph.example/v1/me?access_token=EAAB-secret&syncToken=Ab12-secret&fields=id",
    )
    line = logs.JsonFormatter().format(record)
    assert "secret" not in line and "fields=id" in line


def test_the_cli_writes_text_lines_on_stderr_when_set(hub_env: dict[str, str]) -> None:
    """JSON is the default (the API, worker and beat tests read it); `text` is for a person at a terminal."""
    env = {**hub_env, "SYNCHUB_LOG_LEVEL": "INFO", "SYNCHUB_LOG_FORMAT": "text"}
    as_text = run_cli(["db", "upgrade"], env)
    assert as_text.returncode == 0, as_text.stderr
    assert as_text.stdout.strip() == "database at head", "stdout carries no log"
    lines = as_text.stderr.splitlines()
    assert lines and all(line[:4].isdigit() and not line.startswith("{") for line in lines), lines
    assert any(" INFO alembic.runtime.migration: " in line for line in lines), lines


def test_beat_writes_json_lines_and_no_banner(hub_env: dict[str, str]) -> None:
    beat = Beat({**hub_env, "SYNCHUB_LOG_LEVEL": "INFO"}).start()
    try:

        def started() -> list[dict[str, Any]] | None:
            lines = [json.loads(line) for line in beat.output().splitlines()]
            return lines if any(line["message"] == "beat: Starting..." for line in lines) else None

        lines = wait_for(started, timeout=30, what="beat to log its start")
    finally:
        beat.stop()
    assert all(line["logger"] and line["level"] for line in lines)


def test_the_api_process_writes_uvicorns_lines_as_json(hub_env: dict[str, str], tmp_path: Path) -> None:
    port, err = free_port(), tmp_path / "api.err"
    with err.open("wb") as stderr:
        process = spawn(
            [sys.executable, "-m", "hub", "api", "--port", str(port)],
            env=clean_environ({**hub_env, "SYNCHUB_LOG_LEVEL": "INFO"}),
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
        )
    try:

        def started() -> list[dict[str, Any]] | None:
            assert process.poll() is None, err.read_text()
            lines = [json.loads(line) for line in err.read_text().splitlines()]
            return lines if any(line["message"] == "Application startup complete." for line in lines) else None

        lines = wait_for(started, timeout=30, what="the API to log its start")
    finally:
        kill_group(process)
    assert {line["logger"] for line in lines} >= {"uvicorn.error"}
    assert process.stdout is not None and process.stdout.read() == b"", "stdout carries no log"


def test_celerys_failure_line_names_the_task_and_error_class_only() -> None:
    context = {
        "id": "t-1",
        "name": "synchub.sync.run",
        "exc": f"IntegrityError('Failing row contains ({PRIVATE})')",
        "traceback": f"Traceback ... DETAIL: Failing row contains ({PRIVATE})",
        "args": f"('{PRIVATE}',)",
        "kwargs": "{}",
        "description": "raised unexpected",
        "internal": False,
    }
    line = logs.JsonFormatter().format(record_of("celery.app.trace", LOG_FAILURE, context, extra={"data": context}))
    fields = json.loads(line)
    assert PRIVATE not in line
    assert fields["message"] == "Task synchub.sync.run[t-1] raised unexpected"
    assert (fields["task"], fields["task_id"], fields["error_type"]) == ("synchub.sync.run", "t-1", "IntegrityError")
