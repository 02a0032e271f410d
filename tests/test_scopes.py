"""The scope gate: every group needed, any one scope within a group; what a refused call takes from the grant."""

from __future__ import annotations

import pytest

from core.scopes import Scopes, after_refusal, allows, missing

CALENDAR = Scopes.any_of({"calendar", "calendar.readonly"}) & Scopes.any_of(
    {"calendar", "calendar.readonly", "calendar.events.readonly"}
)
LEADS = Scopes.all_of("pages_show_list", "leads_retrieval", "pages_manage_metadata")


@pytest.mark.parametrize(
    ("granted", "required", "lacking"),
    [
        ({"calendar.readonly"}, CALENDAR, []),
        ({"calendar.events.readonly"}, CALENDAR, [frozenset({"calendar", "calendar.readonly"})]),
        ({"calendar.events.readonly", "calendar"}, CALENDAR, []),
        (set(), CALENDAR, list(CALENDAR.groups)),
        ({"pages_show_list", "leads_retrieval", "pages_manage_metadata", "email"}, LEADS, []),
        ({"pages_show_list", "pages_manage_metadata"}, LEADS, [frozenset({"leads_retrieval"})]),
    ],
)
def test_every_group_is_needed_and_any_one_scope_within_it(
    granted: set[str], required: Scopes, lacking: list[frozenset[str]]
) -> None:
    assert missing(granted, required) == lacking
    assert allows(granted, required) is (lacking == [])


def test_a_requirement_cannot_be_empty_or_hold_an_empty_group() -> None:
    with pytest.raises(ValueError, match="at least one group"):
        Scopes(())
    with pytest.raises(ValueError, match="no group may be empty"):
        Scopes((frozenset({"a"}), frozenset()))


def test_a_refusal_naming_its_scopes_takes_only_those() -> None:
    granted = ["pages_show_list", "leads_retrieval", "pages_manage_metadata", "business_management"]
    kept = after_refusal(granted, LEADS, frozenset({"leads_retrieval"}))
    assert kept == ["pages_show_list", "pages_manage_metadata", "business_management"]
    assert not allows(kept, LEADS)


def test_a_refusal_naming_nothing_takes_every_scope_of_the_capabilitys_groups() -> None:
    granted = ["openid", "calendar.readonly", "contacts.readonly"]
    kept = after_refusal(granted, CALENDAR, frozenset())
    assert kept == ["openid", "contacts.readonly"]
    assert missing(kept, CALENDAR) == list(CALENDAR.groups)


def test_a_refusal_whose_named_scopes_would_leave_the_capability_allowed_takes_its_groups() -> None:
    """Taking only `calendar` would leave `calendar.readonly` answering both groups: the next run would be refused
    the same way, poll after poll."""
    kept = after_refusal(["openid", "calendar", "calendar.readonly"], CALENDAR, frozenset({"calendar"}))
    assert kept == ["openid"]
