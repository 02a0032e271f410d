"""Erase: a user's (or one connection's) data leaves no row in any table that has a connection, user or workspace
column; the grant is revoked and the calendar's channels stopped at the provider (the sandbox's log shows it);
with the provider down the local data goes at once and the owed calls land through beat when it is back."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from core.models import AuditEvent
from sync.erasure import PendingUndo
from tests.conftest import wait_for
from tests.erasure.conftest import PrivacyHub

REVOKE, STOP = "/revoke", "/calendar/v3/channels/stop"


def connected(privacy: PrivacyHub, user: str, workspace: str, contacts: int = 3) -> tuple[uuid.UUID, str]:
    """A new account of `user` connected with contacts and its primary calendar (a live channel), first synced."""
    account = privacy.account(contacts=contacts)
    browser = privacy.hub.browser(user=user, workspace=workspace)
    _, connection_id = privacy.connect(account, browser=browser)
    primary = next(r for r in privacy.calendars(browser, connection_id).values() if r["selected"])
    privacy.settled(connection_id, primary["id"], 1)
    privacy.hub.wait_run(browser, connection_id)
    assert live_channels(privacy, account), "selecting the primary calendar opened a channel"
    return connection_id, account


def live_channels(privacy: PrivacyHub, account: str) -> list[dict[str, Any]]:
    return [dict(c) for c in privacy.admin.calendar.channels(account) if c["live"]]


def live_tokens(privacy: PrivacyHub, account: str) -> list[str]:
    return [t["value"] for t in privacy.admin.tokens(account=account, client_id=privacy.hub.client_id) if t["live"]]


def calls(privacy: PrivacyHub, path: str, after: int, ok: bool = True) -> list[dict[str, Any]]:
    return [dict(e) for e in privacy.admin.request_log(after) if e["path"] == path and (200 <= e["status"] < 300) == ok]


def audit(privacy: PrivacyHub, workspace: str, action: str) -> list[AuditEvent]:
    with privacy.hub.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.workspace_id == workspace, AuditEvent.action == action)
        return list(session.scalars(query))


def test_erase_me_leaves_no_row_of_the_user_and_undoes_everything_at_the_provider(privacy: PrivacyHub) -> None:
    tag = uuid.uuid4().hex[:6]
    workspace, user, other = f"ws-erase-{tag}", f"erin-{tag}", f"olive-{tag}"
    mine, account = connected(privacy, user, workspace)
    their_account = privacy.account(contacts=2)
    their_browser = privacy.hub.browser(user=other, workspace=workspace)
    theirs = privacy.hub.connect(their_browser, their_account)
    privacy.hub.wait_run(their_browser, theirs)
    assert privacy.owned_rows([mine], user, workspace), "the user has data to erase"
    mark = privacy.hub.log_mark()

    with privacy.api(user, workspace) as api:
        answer = api.delete("/api/v1/privacy/me")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["provider_undo"] == "done" and [c["connection_id"] for c in body["connections"]] == [str(mine)]
    assert body["connections"][0]["revoked_at_provider"] is True and body["connections"][0]["resources_undone"] == 1

    assert privacy.owned_rows([mine], user, workspace) == {}, "no row of the user's in any owner-column table"
    assert privacy.rows_naming(account) == {}, "nor of their account, in any table (webhook deliveries included)"
    assert calls(privacy, REVOKE, mark) and calls(privacy, STOP, mark), "the sandbox saw the revoke and the stop"
    assert live_tokens(privacy, account) == [] and live_channels(privacy, account) == []

    assert live_tokens(privacy, their_account), "the other user's grant is kept"
    with privacy.api(other, workspace) as api:
        assert len(api.get("/api/v1/contacts", params={"limit": 100}).json()["contacts"]) == 2
    entry = audit(privacy, workspace, "privacy.user_erased")
    assert len(entry) == 1 and entry[0].actor == "privacy" and entry[0].connection_id is None
    assert user not in str(entry[0].detail) and str(mine) not in str(entry[0].detail)
    assert entry[0].detail["provider_undo"] == "done" and entry[0].detail["connections"] == 1
    assert privacy.owned_rows([theirs], other, workspace), "the other user's rows are all there"

    by_operator = privacy.cli("privacy", "erase", other, "--workspace", workspace)
    assert by_operator.exit_code == 0, by_operator.output
    assert f"connection {theirs}:" in by_operator.output and "revoked at the provider" in by_operator.output
    assert privacy.owned_rows([theirs], other, workspace) == {} and live_tokens(privacy, their_account) == []


def test_erase_with_the_provider_down_is_local_at_once_and_the_revoke_lands_later(privacy: PrivacyHub) -> None:
    tag = uuid.uuid4().hex[:6]
    workspace, user = f"ws-erase-{tag}", f"dana-{tag}"
    connection_id, account = connected(privacy, user, workspace)
    mark = privacy.hub.log_mark()
    privacy.admin.set_faults([{"path_prefix": REVOKE, "status": 503}, {"path_prefix": STOP, "status": 503}])
    try:
        with privacy.api(user, workspace) as api:
            answer = api.delete(f"/api/v1/privacy/connections/{connection_id}")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["provider_undo"] == "pending" and body["connections"][0]["pending_id"]
        assert "retried in the background" in body["provider_undo_note"]
        assert privacy.owned_rows([connection_id], user, workspace) == {}, "the local data is gone at once"
        assert live_channels(privacy, account) and live_tokens(privacy, account), "the provider was down"
        assert calls(privacy, STOP, mark, ok=False), "the stop was tried"
        entry = audit(privacy, workspace, "privacy.connection_erased")
        assert entry[0].detail["provider_undo"] == "pending"
        assert entry[0].detail["pending_ids"] == [body["connections"][0]["pending_id"]]
        with privacy.hub.sessions() as session:
            pending = session.get_one(PendingUndo, uuid.UUID(body["connections"][0]["pending_id"]))
            assert account.encode() not in pending.sealed and str(connection_id) not in str(pending.last_error)
        wait_for(
            lambda: privacy.hub.log_mark() > mark and calls(privacy, STOP, mark + 1, ok=False)[1:],
            timeout=60,
            what="beat to try the stop again while the provider is down",
        )
    finally:
        privacy.admin.clear_faults()

    wait_for(lambda: not live_channels(privacy, account), timeout=60, what="the channel stopped once Google is back")
    wait_for(lambda: not live_tokens(privacy, account), timeout=60, what="the revoke to land")
    wait_for(lambda: audit(privacy, workspace, "privacy.provider_undo_done"), timeout=30, what="the audit entry")
    with privacy.hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(PendingUndo)) == 0, "the sealed tokens went with it"
    assert calls(privacy, REVOKE, mark), "the revoke appears in the sandbox's log"
