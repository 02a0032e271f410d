"""Exceptions as logs may hold them: the kind of error and where it happened, never a value it carries.

A database error's text can quote a row (PostgreSQL's `DETAIL: Failing row contains (...)`), and SQLAlchemy's can
quote a statement's parameters; both would put a record's contents in the log. `described` keeps the error's
class, SQLSTATE and primary message; `where` keeps the traceback's frames without the exception's text.
"""

from __future__ import annotations

import traceback

FIRST_LINE_CHARS = 200


def _driver_error(exc: BaseException) -> BaseException:
    """The database driver's own error behind a wrapper (SQLAlchemy keeps it as `orig`), else `exc`."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def described(exc: BaseException) -> str:
    """`Class (SQLSTATE): primary message` for a database error, else the class and the message's first line."""
    driver = _driver_error(exc)
    diag = getattr(driver, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary is not None:
        return f"{type(exc).__name__} ({getattr(driver, 'sqlstate', None)}): {primary}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:FIRST_LINE_CHARS]}"


def where(exc: BaseException) -> str:
    """The traceback's frames (files, lines, code), without the exception's message."""
    return "".join(traceback.format_tb(exc.__traceback__))


def safe_exception(exc: BaseException) -> str:
    """What a log line says of an exception: its description, then where it was raised."""
    return f"{described(exc)}\n{where(exc)}"
