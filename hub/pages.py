"""Server-rendered pages (Jinja2, autoescaped)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(loader=PackageLoader("hub", "templates"), autoescape=select_autoescape(default=True))


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)
