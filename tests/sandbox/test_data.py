"""Seeded contacts carry the mess of real address books, reproducibly, in Google's exact shape."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from googleapiclient.discovery import Resource

from sandbox.admin_client import SandboxAdmin
from tests.sandbox.conftest import ADA, CLIENT_ID, CONTACTS, list_all

People = Callable[[str], Resource]
RTL = re.compile(r"[\u0590-\u08ff]")
NON_LATIN = re.compile(r"[^\x00-\u024f\s]")


def every_contact(admin: SandboxAdmin, people: People, account: str) -> list[dict[str, Any]]:
    token = admin.mint_tokens(account, CLIENT_ID, [CONTACTS])["access_token"]
    persons, _ = list_all(people(token), page_size=1000)
    return persons


def primary_position(items: list[dict[str, Any]]) -> int:
    return next(i for i, item in enumerate(items) if item["metadata"].get("primary"))


def display_name(person: dict[str, Any]) -> str:
    return str(person.get("names", [{}])[0].get("displayName", ""))


@pytest.fixture
def ada_contacts(admin: SandboxAdmin, people: People) -> list[dict[str, Any]]:
    return every_contact(admin, people, ADA)


def test_seeded_contacts_have_real_world_mess(ada_contacts: list[dict[str, Any]]) -> None:
    phones = [phone for p in ada_contacts for phone in p.get("phoneNumbers", [])]
    several_emails = [p["emailAddresses"] for p in ada_contacts if len(p.get("emailAddresses", [])) > 1]

    assert any("names" not in p for p in ada_contacts)
    assert any(RTL.search(display_name(p)) for p in ada_contacts)
    assert any(NON_LATIN.search(display_name(p)) and not RTL.search(display_name(p)) for p in ada_contacts)
    assert any(primary_position(emails) > 0 for emails in several_emails)
    assert any("canonicalForm" not in phone for phone in phones)
    assert any("canonicalForm" in phone for phone in phones)
    assert any("organizations" not in p for p in ada_contacts)
    assert any(len(p.get("phoneNumbers", [])) > 1 for p in ada_contacts)


def test_each_field_has_exactly_one_primary_and_no_empty_lists(ada_contacts: list[dict[str, Any]]) -> None:
    marked = ("names", "emailAddresses", "phoneNumbers", "organizations")

    for person in ada_contacts:
        assert all(person[field] for field in marked if field in person)
        for field in (f for f in marked if f in person):
            assert sum(bool(item["metadata"].get("primary")) for item in person[field]) == 1
        assert (
            person["memberships"][0]["contactGroupMembership"]["contactGroupResourceName"] == "contactGroups/myContacts"
        )
        assert person["etag"].startswith("%") and person["resourceName"].startswith("people/c")


def test_canonical_form_is_e164_when_present(ada_contacts: list[dict[str, Any]]) -> None:
    forms = [
        phone["canonicalForm"] for p in ada_contacts for phone in p.get("phoneNumbers", []) if "canonicalForm" in phone
    ]

    assert forms and all(re.fullmatch(r"\+[1-9]\d{6,14}", form) for form in forms)


def test_the_same_seed_gives_the_same_contacts(admin: SandboxAdmin, people: People) -> None:
    admin.seed_account("twin@sandbox.test", contacts=60, seed=5)
    first = every_contact(admin, people, "twin@sandbox.test")
    admin.seed_account("twin@sandbox.test", contacts=60, seed=5)
    second = every_contact(admin, people, "twin@sandbox.test")
    admin.seed_account("twin@sandbox.test", contacts=60, seed=6)
    other = every_contact(admin, people, "twin@sandbox.test")

    assert first == second
    assert [display_name(p) for p in first] != [display_name(p) for p in other]


def test_admin_contacts_are_stored_as_google_would(admin: SandboxAdmin, people: People) -> None:
    admin.seed_account("mess@sandbox.test")
    fields = {
        "emailAddresses": [
            {"value": "a@example.com", "type": "work"},
            {"value": "b@example.com", "type": "home", "metadata": {"primary": True}},
        ],
        "phoneNumbers": [{"value": "0800-FLOWERS", "type": "Car"}, {"value": "+44 20 7946 0000", "type": "mobile"}],
        "organizations": [],
    }

    admin.add_contact("mess@sandbox.test", fields)
    (person,) = every_contact(admin, people, "mess@sandbox.test")

    assert "names" not in person and "organizations" not in person
    assert primary_position(person["emailAddresses"]) == 1
    assert person["emailAddresses"][0]["formattedType"] == "Work"
    assert "canonicalForm" not in person["phoneNumbers"][0] and person["phoneNumbers"][0]["formattedType"] == "Car"
    assert person["phoneNumbers"][1]["canonicalForm"] == "+442079460000"
    assert person["metadata"]["sources"][0]["type"] == "CONTACT"


def test_admin_refuses_fields_google_does_not_have(admin: SandboxAdmin) -> None:
    with pytest.raises(httpx.HTTPStatusError) as refused:
        admin.add_contact(ADA, {"nickname": [{"value": "x"}]})

    assert refused.value.response.status_code == 400
