"""Scope groups through the Google flow: a capability needs every group, and what is granted is what Google says.

The two-group capability belongs to a connector installed the way a third party's is, through the
`synchub.connectors` entry point group: "My contacts" and "Other contacts" together, each with its own scope.
"""

from __future__ import annotations

import re
import textwrap
import uuid
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import registry
from tests.conftest import Worker, wait_for
from tests.google.conftest import CONTACTS_SCOPE, TERMINAL, GoogleHub, new_account
from tests.sandbox.browser import authorize, forms

OTHER_CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts.other.readonly"
PLUGIN = '''
"""A third-party connector: contacts that need two grants, "My contacts" and "Other contacts"."""

from connectors.base import Capability, ConnectorSpec
from connectors.google_api import method_scopes
from connectors.google_contacts.stream import GoogleContactsStream

EVERYONE = Capability(
    name="everyone",
    display_name="Everyone",
    record_kind="contact",
    required=method_scopes("people", "v1", "people", "connections", "list")
    & method_scopes("people", "v1", "otherContacts", "list"),
    requested_scopes=(
        "https://www.googleapis.com/auth/contacts.readonly",
        "https://www.googleapis.com/auth/contacts.other.readonly",
    ),
    stream=GoogleContactsStream,
)
SPEC = ConnectorSpec(slug="grouped_contacts", display_name="Grouped contacts", auth_provider="google",
                     capabilities=(EVERYONE,))
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The connector installed on a folder of the path, for this process and for the workers given it."""
    (tmp_path / "grouped_contacts_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "grouped_contacts_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: grouped-contacts-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[synchub.connectors]\ngrouped_contacts = grouped_contacts_plugin:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.available.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    registry.available.cache_clear()


def grant_access_link(hub: GoogleHub, browser: httpx.Client, connection_id: uuid.UUID) -> str:
    page = browser.get(f"{hub.url}/").text
    links = re.findall(r'href="(/connect/google\?[^"]*)">Grant access</a>', page)
    assert len(links) == 1, page
    link = unescape(links[0])
    assert f"reconnect={connection_id}" in link, "granting access is for this connection's own account"
    return link


def ended(hub: GoogleHub, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, Any] | None:
    everyone = hub.capability(browser, connection_id, "everyone")
    run = everyone["last_run"]
    return everyone if run is not None and run["status"] in TERMINAL else None


def test_a_capability_missing_one_group_shows_grant_access_and_is_never_attempted(
    plugin: Path, google_hub_factory: Callable[..., GoogleHub]
) -> None:
    hub = google_hub_factory(SYNCHUB_CONNECTORS="grouped_contacts")
    worker = Worker({**hub.env, "PYTHONPATH": str(plugin)}, queues="sync,maintenance").start()
    try:
        account = new_account(hub.admin, contacts=12)
        browser = hub.browser(user="grouped")
        mark = hub.log_mark()
        connection_id = hub.connect(browser, account, capabilities="everyone", tick=[CONTACTS_SCOPE])

        everyone = hub.capability(browser, connection_id, "everyone")
        assert everyone["state"] == "grant_access" and everyone["last_run"] is None
        assert everyone["missing_scopes"] == [[OTHER_CONTACTS_SCOPE]], "the contacts group is answered, not this"
        assert CONTACTS_SCOPE in hub.connection(browser, connection_id)["granted_scopes"]
        refused = browser.post(f"{hub.url}/api/v1/connections/{connection_id}/sync").json()
        assert refused["runs"] == {"everyone": None}
        assert hub.people_calls(account, after=mark) == [], "a capability without every group is never attempted"

        page = browser.get(f"{hub.url}{grant_access_link(hub, browser, connection_id)}")
        start = browser.post(f"{hub.url}/connect/google", data=dict(forms(page)[0].hidden))
        assert start.status_code == 303, start.text
        back = authorize(browser, start.headers["location"], account=account)
        done = browser.get(back.headers["location"])
        assert done.status_code == 303 and done.headers["location"] == f"/?connected={connection_id}"

        everyone = wait_for(lambda: ended(hub, browser, connection_id), timeout=60, what="the run after granting")
        assert everyone["last_run"]["status"] == "succeeded" and everyone["last_run"]["counts"]["created"] == 12
        assert everyone["state"] == "ok" and everyone["missing_scopes"] == []
        assert hub.people_calls(account, after=mark) != []
    finally:
        worker.stop()


def test_a_token_answer_without_scope_grants_nothing(google_hub: GoogleHub) -> None:
    """Google always says what it granted; a provider that does not is never taken to have granted the request."""
    admin, account = google_hub.admin, new_account(google_hub.admin, contacts=3)
    browser = google_hub.browser(user="unsaid")
    mark = google_hub.log_mark()
    admin.google_settings(omit_token_scope=True)
    try:
        connection_id = google_hub.connect(browser, account)
    finally:
        admin.google_settings(omit_token_scope=False)
    view = google_hub.connection(browser, connection_id)
    assert view["granted_scopes"] == []
    assert view["capabilities"][0]["state"] == "grant_access" and view["capabilities"][0]["last_run"] is None
    assert google_hub.people_calls(account, after=mark) == []
