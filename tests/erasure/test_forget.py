"""Forget a person: their address goes from every table of the workspace (contacts, attendees, organizers, free
text), only as a keyed hash onto its suppression list; a full resync skips them and counts them as suppressed;
another workspace keeps them; a user's token cannot ask for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from crm.suppression import SuppressionRow
from tests.calendar.test_calendar_sync import at
from tests.conftest import wait_for
from tests.erasure.conftest import PrivacyHub


def test_a_forgotten_person_is_gone_everywhere_and_a_full_resync_does_not_bring_them_back(
    privacy: PrivacyHub,
) -> None:
    tag = uuid.uuid4().hex[:8]
    workspace, elsewhere, user = f"ws-forget-{tag}", f"ws-keep-{tag}", f"fay-{tag}"
    address = f"forget-me-{tag}@example.test"
    person = {"names": [{"givenName": "Fern", "familyName": f"Gone{tag}"}], "emailAddresses": [{"value": address}]}
    account = privacy.account(contacts=2)
    privacy.admin.add_contact(account, person)
    today = datetime.now(UTC).date()
    meeting = privacy.admin.calendar.add_event(
        account,
        account,
        {
            "summary": "Intro",
            "description": f"Call {address.upper()} about the offer",
            "start": at(today, 10),
            "end": at(today, 11),
            "attendees": [address.title(), f"stays-{tag}@example.test"],
        },
    )
    browser = privacy.hub.browser(user=user, workspace=workspace)
    _, connection_id = privacy.connect(account, browser=browser)
    primary = next(r for r in privacy.calendars(browser, connection_id).values() if r["selected"])
    privacy.settled(connection_id, primary["id"], 1)
    privacy.hub.wait_run(browser, connection_id)
    other_account = privacy.account(contacts=0)
    privacy.admin.add_contact(other_account, person)
    other = privacy.hub.browser(user=user, workspace=elsewhere)
    other_id = privacy.hub.connect(other, other_account)
    privacy.hub.wait_run(other, other_id)
    assert privacy.rows_naming(address, but_workspace=elsewhere), "the workspace holds the person"

    with privacy.api(user, workspace) as api:
        refused = api.post(f"/api/v1/workspaces/{workspace}/privacy/forget", json={"email": address})
    assert refused.status_code == 403, refused.text
    with privacy.service() as service:
        answer = service.post(f"/api/v1/workspaces/{workspace}/privacy/forget", json={"email": f" {address.upper()} "})
    assert answer.status_code == 200, answer.text
    deleted = answer.json()["deleted"]
    assert deleted["contacts"] == 1 and deleted["event_attendees"] == 1 and deleted["event_texts"] == 1, deleted

    assert privacy.rows_naming(address, but_workspace=elsewhere) == {}, "gone from every table of the workspace"
    with privacy.hub.sessions() as session:
        listed = session.scalars(select(SuppressionRow).where(SuppressionRow.workspace_id == workspace)).all()
    assert len(listed) == 1 and address.encode() not in listed[0].digest and len(listed[0].digest) == 32
    assert privacy.rows_naming(address).get("crm_contacts") == 1, "the other workspace keeps its copy"
    assert len(privacy.hub.contacts(browser, connection_id)) == 2

    privacy.admin.expire_sync_tokens(account)
    privacy.admin.calendar.update_event(account, account, meeting["id"], {"summary": "Intro, moved"})
    run = privacy.hub.sync_now(browser, connection_id)
    assert run["status"] == "succeeded" and run["full_sync"] is True, run
    assert run["suppressed"] == 1 and run["counts"]["created"] == 0, run
    # The change reaches the hub by its push channel (or the sync asked for here): whichever run reads it skips
    # the attendee.
    privacy.sync(browser, connection_id)
    wait_for(
        lambda: sum(r.records_suppressed for r in privacy.runs(connection_id, primary["id"])) == 1,
        timeout=60,
        what="a calendar run to count the forgotten attendee as suppressed",
    )
    assert privacy.rows_naming(address, but_workspace=elsewhere) == {}, "the resync did not bring them back"
    event = next(e for e in privacy.events(browser, connection_id=str(connection_id)) if e["summary"] == "Intro, moved")
    assert [a["email"] for a in event["attendees"]] == [f"stays-{tag}@example.test"]

    again = privacy.cli("privacy", "forget", address, "--workspace", workspace)
    assert again.exit_code == 0, again.output
    assert "0 contacts" in again.stdout and "was already on" in again.stdout, again.stdout
