"""The audit log people read: connect, grant changes (a scope withdrawn at the provider, granted again), token
refreshes counted once a day per connection, the export and the disconnect, newest first and keyset-paged, for the
user and (with the CRM's service token) the whole workspace; never a token or a record's contents."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from core.models import Connection, audit
from tests.google.conftest import CONTACTS_SCOPE, new_account
from tests.privacy.conftest import PrivacyHub, holder
from token_vault.models import SealedCredential
from token_vault.vault import Vault, key_ring


def every_entry(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        answer = client.get(path, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        found.extend(answer.json()["entries"])
        cursor = answer.json()["next_cursor"]
        if not cursor:
            return found


def tokens(hub: PrivacyHub, connection_id: uuid.UUID) -> set[str]:
    vault = Vault(key_ring(hub.google.settings.vault))
    with hub.google.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        kinds = session.scalars(select(SealedCredential.kind).where(SealedCredential.connection_id == connection_id))
        return {secret.value for kind in list(kinds) if (secret := vault.read(session, connection, kind)) is not None}


def test_the_audit_log_records_what_happened_counts_refreshes_per_day_and_holds_no_secret(
    privacy_hub: PrivacyHub,
) -> None:
    hub, admin = privacy_hub, privacy_hub.google.admin
    tag = uuid.uuid4().hex[:8]
    user, workspace = f"audited-{tag}", f"ws-audit-{tag}"
    browser = hub.google.browser(user=user, workspace=workspace)
    account = new_account(admin, contacts=3)
    connection_id = hub.google.connect(browser, account, capabilities="contacts")
    assert hub.google.wait_run(browser, connection_id)["status"] == "succeeded"
    seen = tokens(hub, connection_id)
    emails = {e["value"] for c in hub.google.contacts(browser, connection_id) for e in c["emails"]}
    assert emails

    for _ in range(2):  # Google refuses the access token: the vault refreshes it, then the run goes on
        admin.expire_access_tokens(account)
        assert hub.google.sync_now(browser, connection_id)["status"] == "succeeded"
        seen |= tokens(hub, connection_id)
    admin.narrow_grant(account, hub.google.client_id, remove=[CONTACTS_SCOPE])  # withdrawn at Google
    assert hub.google.sync_now(browser, connection_id)["status"] == "failed"
    hub.google.connect(browser, account, capabilities="contacts")  # granted again
    seen |= tokens(hub, connection_id)
    assert browser.get(f"{hub.url}/api/v1/privacy/export").status_code == 200
    neighbour = holder(hub, workspace, f"neighbour-{tag}", f"neighbour-{tag}@sandbox.test", contacts=1)
    with hub.google.sessions() as session, session.begin():
        audit(session, session.get_one(Connection, neighbour), f"neighbour-{tag}", "connection.created")
    gone = browser.delete(f"{hub.url}/api/v1/connections/{connection_id}", params={"delete_data": "true"})
    assert gone.status_code == 200, gone.text

    mine = every_entry(browser, f"{hub.url}/api/v1/audit")
    actions = [entry["action"] for entry in mine]
    assert actions == [
        "connection.disconnected",
        "privacy.exported",
        "connection.grant_changed",
        "connection.reconnected",
        "connection.grant_changed",
        "token.refreshed",
        "connection.created",
    ], "newest first, each once across pages"
    refreshed = mine[actions.index("token.refreshed")]
    assert refreshed["times"] == 2, "one row a day per connection, counted"
    changed = mine[actions.index("connection.grant_changed")]["detail"]
    assert (changed["granted"], changed["declined"]) == ([CONTACTS_SCOPE], [])
    withdrawn = mine[actions.index("connection.grant_changed") + 2]
    assert (withdrawn["actor"], withdrawn["detail"]) == ("system", {"granted": [], "declined": [CONTACTS_SCOPE]})
    assert all(entry["connection_id"] in (str(connection_id), None) for entry in mine), "nothing of the neighbour's"

    with hub.api(hub.service_token) as crm:
        everything = every_entry(crm, f"/api/v1/workspaces/{workspace}/audit")
    assert [e["id"] for e in everything if e["connection_id"] != str(neighbour)] == [e["id"] for e in mine]
    assert any(e["connection_id"] == str(neighbour) for e in everything)
    written = json.dumps(everything)
    assert seen and emails
    for value in seen | emails:
        assert value not in written, "the audit log holds a token or a contact's address"

    assert httpx.get(f"{hub.url}/api/v1/workspaces/{workspace}/audit").status_code == 401
    with hub.api("not-the-service-token-" + tag * 3) as wrong:
        assert wrong.get(f"/api/v1/workspaces/{workspace}/audit").status_code == 403
    refused = browser.get(f"{hub.url}/api/v1/workspaces/{workspace}/audit")
    assert refused.status_code == 403, "a user's token cannot read the workspace's log"
