"""`python -m sandbox` as its own process: announced, answering, seeded, stopped, and restarted from its file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.admin_client import SandboxAdmin
from sandbox.process import running_sandbox

CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"


def test_a_second_sandbox_runs_on_its_own_port_with_its_own_seed(sandbox_session: object) -> None:
    with running_sandbox(seed=99) as url:
        health = httpx.get(url + "/_sandbox/health").json()
        accounts = httpx.get(url + "/_sandbox/google/accounts").json()

    assert health == {"ok": True, "seed": 99}
    assert {(a["email"], a["contacts"]) for a in accounts} == {("ada@sandbox.test", 250), ("grace@sandbox.test", 40)}
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/_sandbox/health")


def contacts_page(url: str, access_token: str, **params: str) -> dict[str, Any]:
    response = httpx.get(
        f"{url}/v1/people/me/connections",
        params={"personFields": "names", "pageSize": "1000", **params},
        headers={"authorization": f"Bearer {access_token}"},
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def refreshed(url: str, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "app", "client_secret": "s"}
    return httpx.post(f"{url}/token", data=form)


def test_a_sandbox_restarted_on_its_state_file_keeps_clients_grants_tokens_and_contacts(
    sandbox_session: object, tmp_path: Path
) -> None:
    state_file = tmp_path / "sandbox.state"
    with running_sandbox(seed=7, state_file=state_file) as url, SandboxAdmin(url) as admin:
        admin.register_client("app", "s", ["http://127.0.0.1/cb"])
        tokens = admin.mint_tokens("grace@sandbox.test", "app", [CONTACTS])
        first = contacts_page(url, tokens["access_token"], requestSyncToken="true")
        added = admin.add_contact("grace@sandbox.test", {"names": [{"givenName": "Anita", "familyName": "Borg"}]})
    assert oct(state_file.stat().st_mode & 0o777) == "0o600"

    with running_sandbox(seed=7, state_file=state_file) as url:
        assert refreshed(url, tokens["refresh_token"]).status_code == 200
        changes = contacts_page(url, tokens["access_token"], syncToken=first["nextSyncToken"])
        everyone = contacts_page(url, tokens["access_token"])

    assert [person["resourceName"] for person in changes["connections"]] == [added]
    assert len(everyone["connections"]) == len(first["connections"]) + 1 == 41

    with running_sandbox(seed=7) as url:
        assert refreshed(url, tokens["refresh_token"]).json()["error"] == "invalid_client", "memory only by default"
