"""The scope gate: granted scopes compared with what a capability requires."""

from __future__ import annotations

from collections.abc import Iterable


def covers(granted: Iterable[str], required_any_of: frozenset[str]) -> bool:
    """True when one of the alternative required scopes was granted (an empty requirement always passes)."""
    return not required_any_of or bool(required_any_of & set(granted))
