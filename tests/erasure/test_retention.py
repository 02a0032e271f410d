"""Retention of a cancelled workspace: the service token cancels (a user's cannot), the connections pause and no
run starts, a reversal inside the window deletes nothing, and after the window (the clock moved in the database)
the sweep deletes exactly that workspace's data, revoking its grants, and nothing of another workspace."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from core.models import AuditEvent, utcnow
from sync.retention import WorkspaceCancellation
from tests import signin
from tests.erasure.conftest import PrivacyHub

PURGE = "synchub.maintenance.purge_cancelled_workspaces"


def move_clock(privacy: PrivacyHub, workspace: str, days: int) -> None:
    with privacy.hub.sessions.begin() as session:
        session.execute(
            update(WorkspaceCancellation)
            .where(WorkspaceCancellation.workspace_id == workspace)
            .values(cancelled_at=utcnow() - timedelta(days=days))
        )


def test_a_cancelled_workspace_is_deleted_after_the_window_and_only_it(privacy: PrivacyHub) -> None:
    tag = uuid.uuid4().hex[:6]
    cancelled, kept, user = f"ws-cancel-{tag}", f"ws-stay-{tag}", f"cal-{tag}"
    accounts, connections = {}, {}
    for workspace in (cancelled, kept):
        accounts[workspace] = privacy.account(contacts=2)
        browser = privacy.hub.browser(user=user, workspace=workspace)
        connections[workspace] = privacy.hub.connect(browser, accounts[workspace])
        privacy.hub.wait_run(browser, connections[workspace])
    before = privacy.workspace_rows(kept)
    url = f"/api/v1/workspaces/{cancelled}/cancel"

    with privacy.api(user, cancelled) as api:
        assert api.post(url).status_code == 403 and api.delete(url).status_code == 403
    with privacy.service() as service:
        answer = service.post(url)
    assert answer.status_code == 200 and answer.json()["connections_paused"] == 1, answer.text
    with privacy.api(user, cancelled) as api:
        mine = f"/api/v1/connections/{connections[cancelled]}"
        assert api.get(mine).json()["status"] == "paused"
        assert api.post(f"{mine}/resume").status_code == 409, "no resuming while cancelled"
        assert api.post(f"{mine}/sync").json()["runs"] == {"contacts": None}, "no new run"
    browser = privacy.hub.browser(user=user, workspace=cancelled)
    assert signin.start_connect(browser, privacy.hub.url, "google").status_code == 409, "nor a new connection"

    move_clock(privacy, cancelled, privacy.hub.settings.retention_days - 1)
    with privacy.service() as service:
        back = service.delete(url)
    assert back.status_code == 200 and back.json()["connections_resumed"] == 1, back.text
    assert privacy.send(PURGE) == {"workspaces_erased": 0, "rows_erased": 0}
    with privacy.api(user, cancelled) as api:
        assert api.get(f"/api/v1/connections/{connections[cancelled]}").json()["status"] == "active"
        assert len(api.get("/api/v1/contacts").json()["contacts"]) == 2, "a reversed cancellation deletes nothing"

    by_operator = privacy.cli("privacy", "cancel", cancelled)
    assert by_operator.exit_code == 0 and "1 connections paused" in by_operator.output, by_operator.output
    move_clock(privacy, cancelled, privacy.hub.settings.retention_days + 1)
    with privacy.service() as service:
        assert service.delete(url).status_code == 409, "the window has ended"
    too_late = privacy.cli("privacy", "reactivate", cancelled)
    assert too_late.exit_code == 1 and "retention period has ended" in too_late.output, too_late.output
    purged = privacy.send(PURGE)
    assert purged["workspaces_erased"] == 1 and purged["rows_erased"] > 0, purged

    assert privacy.workspace_rows(cancelled) == {"audit_log": 1}, "only the entry that says so"
    with privacy.hub.sessions() as session:
        entry = session.query(AuditEvent).filter(AuditEvent.workspace_id == cancelled).one()
    assert entry.action == "workspace.erased_by_retention" and entry.actor == "system"
    assert user not in str(entry.detail) and entry.connection_id is None
    assert privacy.rows_naming(str(connections[cancelled]), accounts[cancelled]) == {}
    assert not [t for t in privacy.admin.tokens(account=accounts[cancelled]) if t["live"]], "its grant was revoked"
    assert privacy.workspace_rows(kept) == before, "nothing of the other workspace"
