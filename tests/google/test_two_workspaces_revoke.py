"""Google ends the whole grant of an account to the app on a revoke: a disconnect in one workspace must not break
the same account's connection in another. Only the last connection that holds the grant revokes it."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
from sqlalchemy import text

from core.identity import issue_token
from core.models import Connection
from tests.google.conftest import GoogleHub, new_account
from token_vault.fresh import REFRESH
from token_vault.vault import Vault, key_ring


def api(hub: GoogleHub, user: str, workspace: str) -> httpx.Client:
    token = issue_token(hub.jwt_secret, user, workspace, 3600)
    return httpx.Client(base_url=hub.url, timeout=60, headers={"Authorization": f"Bearer {token}"})


def refresh_token(hub: GoogleHub, connection_id: uuid.UUID) -> str | None:
    with hub.sessions() as session:
        secret = Vault(key_ring(hub.settings.vault)).read(session, session.get_one(Connection, connection_id), REFRESH)
    return None if secret is None else secret.value


def live_tokens(hub: GoogleHub, account: str) -> set[str]:
    return {t["value"] for t in hub.admin.tokens(account=account, client_id=hub.client_id) if t["live"]}


def test_a_disconnect_keeps_a_grant_another_workspace_uses_and_the_last_one_revokes(google_hub: GoogleHub) -> None:
    admin = google_hub.admin
    account = new_account(admin, contacts=6)
    in_a, in_b = (
        google_hub.browser(user="pat", workspace="ws-grant-a"),
        google_hub.browser(user="pat", workspace="ws-grant-b"),
    )
    a, b = google_hub.connect(in_a, account), google_hub.connect(in_b, account)
    assert a != b
    google_hub.wait_run(in_a, a)
    google_hub.wait_run(in_b, b)
    a_token = refresh_token(google_hub, a)
    assert a_token is not None and a_token in live_tokens(google_hub, account)

    with api(google_hub, "pat", "ws-grant-b") as b_api:
        answer = b_api.delete(f"/api/v1/connections/{b}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["revoked_at_provider"] is False
    assert body["credentials_deleted"] is True and body["grant_in_use_elsewhere"] is True
    assert not [e for e in admin.request_log() if e["path"].endswith("/revoke") and e["account"] == account]
    assert a_token in live_tokens(google_hub, account), "workspace A's grant is still live at Google"
    with google_hub.engine.connect() as db:
        held = db.execute(text("select count(*) from credentials where connection_id = :b"), {"b": b}).scalar()
    assert held == 0, "workspace B's credentials were deleted"

    admin.add_contact(account, {"names": [{"givenName": "Grace", "familyName": "Hopper"}]})
    with api(google_hub, "pat", "ws-grant-a") as a_api:
        started = a_api.post(f"/api/v1/connections/{a}/sync")
        assert started.status_code == 200, started.text
        run = google_hub.wait_run(in_a, a, started.json()["runs"]["contacts"])
        assert run["status"] == "succeeded", run
        assert a_api.get(f"/api/v1/connections/{a}").json()["status"] == "active"
    assert len(google_hub.contacts(in_a, a)) == 7

    with api(google_hub, "pat", "ws-grant-a") as a_api:
        last = a_api.delete(f"/api/v1/connections/{a}").json()
    assert last["revoked_at_provider"] is True and last["grant_in_use_elsewhere"] is False
    assert live_tokens(google_hub, account) == set(), "the last holder revoked the grant"


def test_two_disconnects_of_one_account_at_once_leave_no_grant_behind(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=2)
    places = [("sam", f"ws-race-{n}") for n in range(2)]
    connections = [google_hub.connect(google_hub.browser(*place), account) for place in places]
    for place, connection_id in zip(places, connections, strict=True):
        google_hub.wait_run(google_hub.browser(*place), connection_id)
    clients = [api(google_hub, *place) for place in places]
    barrier = Barrier(2)

    def leave(n: int) -> dict[str, object]:
        barrier.wait()
        answer = clients[n].delete(f"/api/v1/connections/{connections[n]}")
        assert answer.status_code == 200, answer.text
        body: dict[str, object] = answer.json()
        return body

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(leave, range(2)))
    for one in clients:
        one.close()
    assert sorted(a["revoked_at_provider"] for a in answers) == [False, True], answers
    assert live_tokens(google_hub, account) == set(), "the second to leave revoked the grant"
