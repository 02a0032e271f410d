"""`GET /api/v1/privacy/export` and `synchub privacy export`: every record the sandbox holds for the user's
accounts (contacts, leads, events with attendees), each once, with connections, resources, runs and the audit
log; nothing of another user's; no token, password or sealed value; the export itself audited with its counts.
The same records come through each kind's change feed (`updated_since`)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.identity import issue_token
from core.models import Connection
from hub.export import exported_tables
from migrations import target_metadata
from sync.models import Checkpoint
from tests.conftest import ROOT, clean_environ, wait_for
from tests.google.conftest import new_account
from tests.privacy.conftest import PrivacyHub, holder
from token_vault.models import SealedCredential
from token_vault.vault import Vault, key_ring


def secrets_of(hub: PrivacyHub, connection_ids: list[uuid.UUID]) -> dict[str, str]:
    """Every token and sealed value the hub keeps for these connections, in plaintext and as stored, and the
    hub's own client secrets."""
    vault = Vault(key_ring(hub.google.settings.vault))
    found = {"google client secret": hub.google.client_secret, "facebook app secret": hub.facebook.app_secret}
    with hub.google.sessions() as session:
        for connection_id in connection_ids:
            connection = session.get_one(Connection, connection_id)
            for row in session.scalars(select(SealedCredential).where(SealedCredential.connection_id == connection_id)):
                secret = vault.read(session, connection, row.kind)
                assert secret is not None
                found[f"{row.kind} of {connection_id}"] = secret.value
                found[f"sealed {row.kind} of {connection_id}"] = base64.b64encode(row.sealed).decode()
                found[f"sealed {row.kind} of {connection_id} (hex)"] = row.sealed.hex()
            for point in session.scalars(select(Checkpoint).where(Checkpoint.connection_id == connection_id)):
                found[f"sealed checkpoint {point.stream}"] = base64.b64encode(point.sealed).decode()
    return found


def test_export_holds_every_record_of_the_users_accounts_once_and_no_secret(
    privacy_hub: PrivacyHub, tmp_path: Path
) -> None:
    hub, admin = privacy_hub, privacy_hub.google.admin
    tag = uuid.uuid4().hex[:8]
    user, workspace = f"exporter-{tag}", f"ws-export-{tag}"
    browser = hub.google.browser(user=user, workspace=workspace)
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()

    account = new_account(admin, contacts=0)
    contacts = [
        admin.add_contact(
            account,
            {
                "names": [{"givenName": f"Given{i}", "familyName": "Export"}],
                "emailAddresses": [{"value": f"contact{i}-{tag}@example.com"}],
            },
        )
        for i in range(6)
    ]
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    attendees = {f"attendee{i}-{tag}@example.com" for i in range(3)}
    events = [
        admin.calendar.add_event(
            account,
            account,
            {
                "summary": f"Meeting {i}",
                "start": {"dateTime": (start + timedelta(days=i)).isoformat()},
                "end": {"dateTime": (start + timedelta(days=i, hours=1)).isoformat()},
                "attendees": [{"email": email, "responseStatus": "accepted"} for email in sorted(attendees)],
            },
        )["id"]
        for i in range(3)
    ]
    google = hub.google.connect(browser, account, capabilities="contacts,calendar")
    assert hub.google.wait_run(browser, google)["status"] == "succeeded"
    primary = next(r for r in hub.calendar.calendars(browser, google).values() if r["selected"])
    assert [run.status for run in hub.calendar.settled(google, primary["id"], 1)] == ["succeeded"]

    fb_user = hub.facebook.facebook.user(leads=0)
    page = fb_user["pages"][0]
    leads = hub.facebook.facebook.leads(page["forms"][0]["id"], 5)
    facebook = hub.facebook.connect(browser, fb_user["id"])
    assert hub.facebook.backfill(browser, facebook, page["name"])["status"] == "succeeded"

    other_account = f"other-{tag}@sandbox.test"  # another user of the workspace, with records of their own
    other_connection = holder(hub, workspace, f"other-{tag}", other_account, contacts=3)

    fed = {segment: hub.feed(browser, segment, since, limit=2) for segment in ("contacts", "leads", "events")}
    assert Counter(item["external_id"] for item in fed["leads"]) == Counter(leads)
    assert Counter(item["external_id"] for item in fed["events"]) == Counter(events)
    assert all({a["email"] for a in item["attendees"]} == attendees for item in fed["events"])

    answer = browser.get(f"{hub.url}/api/v1/privacy/export")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    document = json.loads(answer.text)
    tables = document["tables"]

    assert (document["workspace_id"], document["user_id"]) == (workspace, user)
    assert list(tables) == [table.name for table in exported_tables(target_metadata())], "every exported table"
    assert document["counts"] == {name: len(rows) for name, rows in tables.items()}
    assert Counter(row["external_id"] for row in tables["crm_contacts"]) == Counter(contacts)
    assert Counter(row["external_id"] for row in tables["crm_leads"]) == Counter(leads)
    assert Counter(row["external_id"] for row in tables["crm_events"]) == Counter(events)
    assert Counter(row["email"] for row in tables["crm_event_attendees"]) == Counter(3 * sorted(attendees))
    assert {row["email"] for row in tables["crm_contact_emails"]} == {f"contact{i}-{tag}@example.com" for i in range(6)}
    assert {row["id"] for row in tables["connections"]} == {str(google), str(facebook)}
    assert {row["connection_id"] for row in tables["connection_resources"]} == {str(google), str(facebook)}
    assert {row["connection_id"] for row in tables["sync_runs"]} == {str(google), str(facebook)}
    assert {entry["connection_id"] for entry in tables["audit_log"]} == {str(google), str(facebook)}
    assert str(other_connection) not in answer.text and other_account not in answer.text, "another user's data"

    for what, value in secrets_of(hub, [google, facebook]).items():
        assert value not in answer.text, f"the export holds the {what}"

    entries = browser.get(f"{hub.url}/api/v1/audit", params={"limit": 1}).json()["entries"]
    assert entries[0]["action"] == "privacy.exported"
    assert entries[0]["detail"] == {"user_id": user, "complete": True, "rows": document["counts"]}

    out = tmp_path / "export.json"
    cli = [sys.executable, "-m", "hub", "privacy", "export", user, "--workspace", workspace, "--output", str(out)]
    done = subprocess.run(cli, env=clean_environ(hub.google.env), cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    by_cli = json.loads(out.read_text())
    assert {n: r for n, r in by_cli["tables"].items() if n != "audit_log"} == {
        n: r for n, r in tables.items() if n != "audit_log"
    }
    assert len(by_cli["tables"]["audit_log"]) == len(tables["audit_log"]) + 1, "the API's export is in the log"
    last = browser.get(f"{hub.url}/api/v1/audit", params={"limit": 1}).json()["entries"][0]
    assert (last["action"], last["actor"], last["detail"]["rows"]) == ("privacy.exported", "cli", by_cli["counts"])


def test_an_export_the_reader_leaves_halfway_is_audited_as_incomplete(privacy_hub: PrivacyHub) -> None:
    hub = privacy_hub
    tag = uuid.uuid4().hex[:8]
    user, workspace = f"leaver-{tag}", f"ws-leave-{tag}"
    holder(hub, workspace, user, tag, contacts=5000)  # far more than one chunk of the stream
    token = issue_token(hub.google.jwt_secret, user, workspace, 600)
    with hub.api(token) as client, client.stream("GET", "/api/v1/privacy/export") as answer:
        assert answer.status_code == 200
        first = next(answer.iter_raw())
        assert first.startswith(b'{"format":')

    def audited() -> dict[str, Any] | None:
        with hub.api(token) as client:
            entries = client.get("/api/v1/audit").json()["entries"]
        return next((e for e in entries if e["action"] == "privacy.exported"), None)

    entry = wait_for(audited, timeout=60, what="the export's audit entry")
    assert entry["detail"]["complete"] is False
