"""Person records in Google's shape: normalising contact fields, and seeded contacts with real-world mess."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

PERSON_FIELDS = frozenset(
    [
        "addresses",
        "ageRanges",
        "biographies",
        "birthdays",
        "calendarUrls",
        "clientData",
        "coverPhotos",
        "emailAddresses",
        "events",
        "externalIds",
        "genders",
        "imClients",
        "interests",
        "locales",
        "locations",
        "memberships",
        "metadata",
        "miscKeywords",
        "names",
        "nicknames",
        "occupations",
        "organizations",
        "phoneNumbers",
        "photos",
        "relations",
        "sipAddresses",
        "skills",
        "urls",
        "userDefined",
    ]
)
WRITABLE_FIELDS = PERSON_FIELDS - {"metadata", "ageRanges", "coverPhotos"}
UNMARKED_FIELDS = frozenset({"memberships"})
FORMATTED_TYPES = {
    "home": "Home",
    "work": "Work",
    "other": "Other",
    "mobile": "Mobile",
    "homeFax": "Home Fax",
    "workFax": "Work Fax",
    "otherFax": "Other Fax",
    "pager": "Pager",
    "workMobile": "Work Mobile",
    "workPager": "Work Pager",
    "main": "Main",
    "googleVoice": "Google Voice",
}
FAMILY_FIRST_SCRIPTS = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
DIALLABLE = re.compile(r"^\+[\d\s().-]{6,}$")
MY_CONTACTS = {
    "contactGroupMembership": {"contactGroupId": "myContacts", "contactGroupResourceName": "contactGroups/myContacts"}
}

Fields = dict[str, list[dict[str, Any]]]


class PersonDataError(ValueError):
    """Contact fields given to the admin API that Google would not store."""


def display_names(name: dict[str, Any]) -> dict[str, str]:
    given, family = name.get("givenName", ""), name.get("familyName", "")
    if not family:
        return {"displayName": given, "displayNameLastFirst": given, "unstructuredName": given}
    if FAMILY_FIRST_SCRIPTS.search(family + given):
        full = f"{family}{given}"
        return {"displayName": full, "displayNameLastFirst": full, "unstructuredName": full}
    return {
        "displayName": f"{given} {family}".strip(),
        "displayNameLastFirst": f"{family}, {given}" if given else family,
        "unstructuredName": f"{given} {family}".strip(),
    }


def with_formatted_type(item: dict[str, Any]) -> dict[str, Any]:
    kind = item.get("type")
    return {**item, "formattedType": FORMATTED_TYPES.get(kind, kind)} if kind else item


def with_canonical_form(item: dict[str, Any]) -> dict[str, Any]:
    value = str(item.get("value", ""))
    if "canonicalForm" in item or not DIALLABLE.match(value):
        return with_formatted_type(item)
    return with_formatted_type({**item, "canonicalForm": "+" + re.sub(r"\D", "", value)})


def with_display_names(item: dict[str, Any]) -> dict[str, Any]:
    return {**display_names(item), **item}


DERIVED: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "names": with_display_names,
    "emailAddresses": with_formatted_type,
    "phoneNumbers": with_canonical_form,
    "organizations": with_formatted_type,
    "addresses": with_formatted_type,
    "urls": with_formatted_type,
    "relations": with_formatted_type,
    "events": with_formatted_type,
}


def primary_index(items: list[dict[str, Any]]) -> int:
    return next((i for i, item in enumerate(items) if item.get("metadata", {}).get("primary")), 0)


def field_metadata(source_id: str, primary: bool) -> dict[str, Any]:
    source = {"source": {"type": "CONTACT", "id": source_id}}
    return {"primary": True, "sourcePrimary": True, **source} if primary else source


def normalise_field(name: str, items: Any, source_id: str) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise PersonDataError(f"{name} must be a list of objects")
    marked = name not in UNMARKED_FIELDS
    primary = primary_index(items)
    derive = DERIVED.get(name, dict)
    return [
        {
            **derive({k: v for k, v in item.items() if k != "metadata"}),
            "metadata": field_metadata(source_id, marked and i == primary),
        }
        for i, item in enumerate(items)
    ]


def normalise(raw: dict[str, Any], source_id: str) -> Fields:
    """Google's stored form of contact fields: metadata on every item, one primary, derived fields, no empty lists."""
    unknown = set(raw) - WRITABLE_FIELDS
    if unknown:
        raise PersonDataError(f"unknown person fields: {', '.join(sorted(unknown))}")
    return {name: normalise_field(name, items, source_id) for name, items in raw.items() if items}


LATIN_NAMES = [
    ("Ada", "Lovelace"),
    ("Grace", "Hopper"),
    ("Alan", "Turing"),
    ("Katherine", "Johnson"),
    ("Edsger", "Dijkstra"),
    ("Barbara", "Liskov"),
    ("Donald", "Knuth"),
    ("Margaret", "Hamilton"),
    ("Dennis", "Ritchie"),
    ("Frances", "Allen"),
    ("José", "Núñez"),
    ("Zoë", "Ångström"),
    ("Søren", "Kierkegaard"),
    ("François", "Müller"),
    ("Łukasz", "Wójcik"),
    ("Şebnem", "Öztürk"),
    ("Siobhán", "Ó Briain"),
    ("Mary-Jane", "O'Neill"),
    ("Jean", "van der Berg"),
]
WORLD_NAMES = [
    ("Дмитрий", "Иванов"),
    ("Ольга", "Смирнова"),
    ("Νίκος", "Παπαδόπουλος"),
    ("محمد", "العلي"),
    ("فاطمة", "الزهراء"),
    ("דוד", "כהן"),
    ("מרים", "לוי"),
    ("سارا", "احمدی"),
    ("太郎", "山田"),
    ("芳", "王"),
    ("민준", "김"),
    ("अनन्या", "शर्मा"),
    ("สมชาย", "ใจดี"),
    ("Thị Minh", "Nguyễn"),
]
MONONYMS = ["Cher", "Björk", "Sukarno", "Teller", "ملك"]
COMPANIES = [
    "Analytical Engines Ltd",
    "Bletchley Park",
    "Compañía Ñandú S.A.",
    "株式会社サンプル",
    "شركة المثال",
    "ACME",
]
TITLES = ["Engineer", "CEO", "", "Head of Sales", "Buyer"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "example.co.uk"]
EMAIL_TYPES = ["home", "work", "other", "School"]
PHONE_TYPES = ["mobile", "work", "home", "main", "workMobile", "homeFax", "Car"]
DIALLABLE_PHONES = ["+44 20 7946 {n:04d}", "+1 (555) 010-{n:04d}", "+49 30 90{n:04d}", "+81 3-{n:04d}-0000"]
LOCAL_PHONES = ["(555) 010-{n:04d}", "020 7946 {n:04d}", "0800-FLOWERS", "ext. {n}", "{n}", "call reception"]


def pick_name(rng: random.Random) -> list[dict[str, Any]]:
    roll = rng.random()
    if roll < 0.1:
        return []
    if roll < 0.14:
        return [{"givenName": rng.choice(MONONYMS)}]
    given, family = rng.choice(WORLD_NAMES if roll < 0.4 else LATIN_NAMES)
    return [{"givenName": given, "familyName": family}]


def with_random_primary(rng: random.Random, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if items:
        items[rng.randrange(len(items))]["metadata"] = {"primary": True}
    return items


def pick_emails(rng: random.Random, index: int) -> list[dict[str, Any]]:
    count = rng.choices([0, 1, 2, 3], weights=[15, 55, 20, 10])[0]
    emails = [
        {"value": f"contact{index}.{k}@{rng.choice(DOMAINS)}", "type": rng.choice(EMAIL_TYPES)} for k in range(count)
    ]
    return with_random_primary(rng, emails)


def pick_phones(rng: random.Random) -> list[dict[str, Any]]:
    count = rng.choices([0, 1, 2, 3], weights=[25, 45, 20, 10])[0]
    formats = [rng.choice(DIALLABLE_PHONES if rng.random() < 0.7 else LOCAL_PHONES) for _ in range(count)]
    phones = [{"value": f.format(n=rng.randrange(10000)), "type": rng.choice(PHONE_TYPES)} for f in formats]
    return with_random_primary(rng, phones)


def pick_organizations(rng: random.Random) -> list[dict[str, Any]]:
    if rng.random() < 0.45:
        return []
    org: dict[str, Any] = {"name": rng.choice(COMPANIES), "type": "work", "current": True}
    title = rng.choice(TITLES)
    return [{**org, "title": title} if title else org]


def generated_contact(rng: random.Random, index: int) -> dict[str, Any]:
    """One contact's raw fields; a contact always carries at least a name, an email or a phone."""
    raw = {
        "names": pick_name(rng),
        "emailAddresses": pick_emails(rng, index),
        "phoneNumbers": pick_phones(rng),
        "organizations": pick_organizations(rng),
        "memberships": [MY_CONTACTS],
    }
    if not (raw["names"] or raw["emailAddresses"] or raw["phoneNumbers"]):
        raw["phoneNumbers"] = [{"value": LOCAL_PHONES[0].format(n=index % 10000), "type": "mobile"}]
    return {name: items for name, items in raw.items() if items}
