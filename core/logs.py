"""Logs: one event a line on stderr, JSON by default, carrying ids and counts and never a secret or a record's contents.

Every process (the API, a worker, beat, the CLI) calls `setup` once. A line holds `ts`, `level`, `logger`, `message`,
the fields bound to the current task by `bind`, and the allow-listed fields a call passes as `extra`; any other field
is dropped, never written. An exception is written as `core.logsafe` describes it (its class, SQLSTATE and primary
message, and where it was raised), never with its text, which may quote a row or a statement's parameters.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

from core.logsafe import described, where

LogFormat = Literal["json", "text"]

FIELDS = frozenset(
    {
        "run_id",
        "connection_id",
        "capability",
        "delivery_id",
        "workspace_id",
        "task",
        "task_id",
        "provider",
        "connector",
        "resource",
        "status",
        "attempt",
        "count",
        "new",
        "row_id",
        "action",
        "error_type",
        "failures",
        "tokens",
        "confirmed",
        "failed",
        "active_key_id",
        "resealed",
        "retried",
        "retries",
        "unopened",
        "contended",
    }
)
"""The only fields a line may carry besides ts, level, logger and message: ids, names, states and counts."""

QUIET_LIBRARIES = ("httpx", "httpcore", "urllib3", "googleapiclient", "authlib", "kombu", "amqp", "celery.bootsteps")
"""Libraries whose info and debug lines quote request URLs (a sync token, a Graph access token) or connection
details: they log warnings and above only, whatever the level."""

SECRET_PARAMETER = re.compile(
    r"(?i)\b(access_token|refresh_token|id_token|client_secret|code|password|token|sync_?token|page_?token|"
    r"appsecret_proof)=[^&\s\"',;]+"
)
BEARER = re.compile(r"(?i)\bBearer\s+[^\s\"',;]+")
CLASS_NAME = re.compile(r"[A-Za-z_][\w.]*")

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_HANDLER_MARK = "_synchub_handler"
_bound: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("synchub_log_fields", default=None)


class Bound:
    """Fields bound for the current context until `reset` (or the end of a `with` block) restores the ones before."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._token = _bound.set({**(_bound.get() or {}), **fields})

    def reset(self) -> None:
        _bound.reset(self._token)

    def __enter__(self) -> Bound:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.reset()


def bind(**fields: Any) -> Bound:
    """Carry `fields` on every line logged in this context (a task, a run) from now on; a field that is not
    allow-listed is refused, so nothing can be bound that a line would not show."""
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise ValueError(f"not a log field: {', '.join(unknown)}")
    return Bound({name: value for name, value in fields.items() if value is not None})


def bound() -> dict[str, Any]:
    """The fields bound in this context."""
    return dict(_bound.get() or {})


def redacted(text: str) -> str:
    """`text` with token-like query parameters and bearer tokens blanked, in case a library quotes a URL."""
    return BEARER.sub("Bearer [redacted]", SECRET_PARAMETER.sub(r"\1=[redacted]", text))


def _safe_arg(value: Any) -> Any:
    return described(value) if isinstance(value, BaseException) else value


def _message(record: logging.LogRecord, fields: dict[str, Any]) -> str:
    """The record's message, with an exception among its arguments described, not quoted. Celery's own task lines
    (received, succeeded, failed, retried) keep their shape without the task's return value or exception text."""
    data = getattr(record, "data", None)
    if isinstance(data, Mapping) and "id" in data and "name" in data and isinstance(record.msg, str):
        fields.setdefault("task", data["name"])
        fields.setdefault("task_id", data["id"])
        if "exc" in data and (named := CLASS_NAME.match(str(data["exc"]))):
            fields.setdefault("error_type", named.group())
        template = record.msg.replace(": %(return_value)s", "").replace(": %(exc)s", "")
        safe = {key: value for key, value in data.items() if key not in ("return_value", "exc", "args", "kwargs")}
        try:
            return template % safe
        except (KeyError, TypeError, ValueError):
            return f"Task {data['name']}[{data['id']}]"
    args = record.args
    if isinstance(args, tuple):
        args = tuple(_safe_arg(arg) for arg in args)
    elif isinstance(args, Mapping):
        args = {key: _safe_arg(value) for key, value in args.items()}
    message = str(record.msg)
    if args:
        try:
            message = message % args
        except (TypeError, ValueError, KeyError):
            message = f"{message} (arguments not shown)"
    return redacted(message)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """What a line says: ts, level, logger, message, the bound and allow-listed fields, and a described exception."""
    extra = {key: value for key, value in record.__dict__.items() if key not in _STANDARD and key in FIELDS}
    fields: dict[str, Any] = {**bound(), **extra}
    message = _message(record, fields)
    line: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "message": message,
        **fields,
    }
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        line.setdefault("error_type", type(exc).__name__)
        line["exception"] = described(exc)
        line["traceback"] = where(exc)
    return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields_of(record), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: message key=value ...`, for a person reading a terminal; an exception follows on its
    own lines, described the same way."""

    def format(self, record: logging.LogRecord) -> str:
        line = fields_of(record)
        exception, traceback = line.pop("exception", None), line.pop("traceback", None)
        head = f"{line.pop('ts')} {line.pop('level')} {line.pop('logger')}: {line.pop('message')}"
        pairs = " ".join(f"{key}={value}" for key, value in line.items())
        text = f"{head} {pairs}" if pairs else head
        if exception is not None:
            text += f"\n{exception}\n{traceback or ''}".rstrip()
        return text


class _Stderr(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is when a line is written (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def setup(level: str = "INFO", log_format: LogFormat = "json") -> None:
    """Send every logger's lines to stderr through our formatter, at `level`. Calling it again replaces the handler
    it added before; other handlers (a test runner's) are left alone."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
    handler = _Stderr()
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(FORMATTERS[log_format]())
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a line like any other, not text on stderr
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
