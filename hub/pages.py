"""Server-rendered pages (Jinja2, autoescaped), and the filters that put times and intervals in plain words."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(loader=PackageLoader("hub", "templates"), autoescape=select_autoescape(default=True))

UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def _when(value: str | datetime) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def span(seconds: float) -> str:
    """A duration in the largest whole unit: "3 minutes", "1 day"."""
    seconds = abs(seconds)
    for size, unit in UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return "a moment"


def relative(value: str | datetime | None, now: datetime | None = None) -> str:
    """ "3 minutes ago", "in 2 hours" or "just now"."""
    if value is None:
        return ""
    delta = (_when(value) - (now or datetime.now(UTC))).total_seconds()
    if abs(delta) < 30:
        return "just now" if delta <= 0 else "in a moment"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def exact(value: str | datetime | None) -> str:
    """The exact time, in UTC, for a `title` (shown on hover)."""
    return "" if value is None else _when(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def every(seconds: int | None) -> str:
    """How often a capability syncs: "every 15 minutes"."""
    if not seconds:
        return ""
    n = span(seconds)
    return f"every {n.removeprefix('1 ')}" if n.startswith("1 ") else f"every {n}"


_env.filters.update(relative=relative, exact=exact, every=every)


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)
