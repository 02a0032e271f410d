"""Shared code names no provider, connector or record kind: each lives in its own folder, config or kind module,
and the shared code reads registries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.registry import available
from crm.kinds import kinds
from oauth.providers import FORM_PROVIDERS, PROVIDERS
from tests.conftest import ROOT

SHARED = ("core", "sync", "crm", "token_vault", "hub", "oauth", "webhooks")
OWN_MODULES = {
    Path("oauth/providers"): "each auth provider's config",
    Path("crm/contacts.py"): "the contact kind's module",
    Path("crm/leads.py"): "the lead kind's module",
    Path("crm/events.py"): "the calendar event kind's module",
    Path("crm/records.py"): "the canonical records kinds produce",
    Path("crm/models.py"): "the record kinds' tables, declared together for the migrations",
    Path("crm/kinds.py"): "the registry of record kinds, one line per kind",
}


def names() -> set[str]:
    """Every connector slug and auth provider, each kind's name and segment, and the providers' own words."""
    found = set(available()) | {spec.auth_provider for spec in available().values()} | set(PROVIDERS)
    found |= set(FORM_PROVIDERS)
    found |= {name for kind in kinds().values() for name in (kind.name, kind.segment)}
    found |= {"facebook", "caldav", "icloud", "fastmail"}
    return found - {"events"}  # the calendar kind's segment is also a plain word (Celery's task events)


def shared_files() -> list[Path]:
    files = [path.relative_to(ROOT) for package in SHARED for path in (ROOT / package).rglob("*") if path.is_file()]
    return sorted(
        path
        for path in files
        if path.suffix in (".py", ".html") and not any(path == own or own in path.parents for own in OWN_MODULES)
    )


def test_the_check_knows_what_to_look_for() -> None:
    assert {"google", "google_contacts", "contact", "contacts"} <= names()
    assert Path("sync/engine.py") in shared_files() and Path("oauth/providers/google.py") not in shared_files()


@pytest.mark.parametrize("path", shared_files(), ids=str)
def test_shared_code_names_no_provider_connector_or_record_kind(path: Path) -> None:
    pattern = re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(map(re.escape, names()))) + r")(?![a-z0-9])", re.I)
    hits = [
        f"{number}: {line.strip()}"
        for number, line in enumerate((ROOT / path).read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
