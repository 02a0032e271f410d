"""The scope gate: what a capability requires as groups of scopes, and whether a grant allows it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scopes:
    """Every group is needed, and any one scope within a group suffices.

    An API that lists, per method, the scopes any one of which lets it run gives one group per method a capability
    calls; permissions that are all needed together give one group each. A credential without scopes (an app
    password opens the whole account) is declared with `Scopes.none()`, which every grant allows; an empty
    requirement is refused otherwise, so none is ever declared by mistake.
    """

    groups: tuple[frozenset[str], ...]
    unscoped: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.unscoped and self.groups:
            raise ValueError("an unscoped requirement has no groups")
        if (not self.groups and not self.unscoped) or not all(self.groups):
            raise ValueError("a requirement needs at least one group, and no group may be empty")

    @classmethod
    def none(cls) -> Scopes:
        """What a capability whose credential grants everything requires: nothing."""
        return cls((), unscoped=True)

    @classmethod
    def any_of(cls, scopes: Iterable[str]) -> Scopes:
        return cls((frozenset(scopes),))

    @classmethod
    def all_of(cls, *scopes: str) -> Scopes:
        return cls(tuple(frozenset({scope}) for scope in scopes))

    def __and__(self, other: Scopes) -> Scopes:
        """Both requirements: the groups of each (a capability calling two methods needs what each accepts)."""
        return Scopes(tuple(dict.fromkeys(self.groups + other.groups)))

    def scopes(self) -> frozenset[str]:
        """Every scope that appears in some group."""
        return frozenset().union(*self.groups)


def missing(granted: Iterable[str], required: Scopes) -> list[frozenset[str]]:
    """The groups of `required` that no granted scope answers, in their declared order."""
    have = frozenset(granted)
    return [group for group in required.groups if not group & have]


def allows(granted: Iterable[str], required: Scopes) -> bool:
    """The one gate: True when every group of `required` has at least one granted scope."""
    return not missing(granted, required)


def after_refusal(granted: Iterable[str], required: Scopes, named: frozenset[str]) -> list[str]:
    """What is still granted after the provider refused a call of a capability needing `required` for want of
    access, naming the scopes it lacks in `named` (often none: many providers' 403 names no scope).

    Only the named scopes are taken away when that is enough to stop the capability, so other capabilities sharing
    the grant keep what they use. When none are named, or their loss would leave the capability allowed (its next
    run would fail the same way), every scope of its groups goes, since the provider did not say which group fell
    short. Asking again restores what is still granted: the provider's answer to the consent lists it all.
    """
    kept = [scope for scope in granted if scope not in named]
    if named and not allows(kept, required):
        return kept
    every = required.scopes()
    return [scope for scope in kept if scope not in every]
