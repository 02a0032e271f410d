"""Who reads a connection's records: its owner, and everyone in its workspace only once the owner shares it;
the controls stay the owner's, and another workspace never reads them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from core.identity import issue_token
from core.models import AuditEvent, Connection
from tests.google.conftest import GoogleHub, new_account


def api(hub: GoogleHub, user: str, workspace: str) -> httpx.Client:
    token = issue_token(hub.jwt_secret, user, workspace, 3600)
    return httpx.Client(base_url=hub.url, timeout=60, headers={"Authorization": f"Bearer {token}"})


def read(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every contact the caller may read, through the records API's pages."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"limit": 500, **params, **({"cursor": cursor} if cursor else {})}
        answer = client.get("/api/v1/contacts", params=query)
        assert answer.status_code == 200, answer.text
        found.extend(answer.json()["contacts"])
        cursor = answer.json()["next_cursor"]
        if not cursor:
            return found


def of(contacts: list[dict[str, Any]], connection_id: uuid.UUID) -> list[dict[str, Any]]:
    return [c for c in contacts if c["connection_id"] == str(connection_id)]


def share(client: httpx.Client, connection_id: uuid.UUID, sharing: str) -> httpx.Response:
    return client.put(f"/api/v1/connections/{connection_id}/sharing", json={"sharing": sharing})


def test_records_follow_the_owners_sharing_choice_and_the_controls_stay_the_owners(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=3)
    address = f"ada-{uuid.uuid4().hex[:8]}@example.test"
    google_hub.admin.add_contact(
        account, {"names": [{"givenName": "Ada"}], "emailAddresses": [{"value": address.upper()}]}
    )
    workspace = f"ws-share-{uuid.uuid4().hex[:6]}"
    connection_id = google_hub.connect(google_hub.browser(user="olive", workspace=workspace), account)
    owner, colleague, outsider = (
        api(google_hub, "olive", workspace),
        api(google_hub, "cole", workspace),
        api(google_hub, "olive", f"{workspace}-other"),
    )
    google_hub.wait_run(google_hub.browser(user="olive", workspace=workspace), connection_id)
    assert len(read(owner, connection_id=connection_id)) == 4

    def sees() -> dict[str, int]:
        """What each reader finds of the connection's contacts: filtered by it, unfiltered, and by address."""
        return {
            who: len(read(client, connection_id=connection_id))
            + len(of(read(client), connection_id))
            + len(of(read(client, email=f"  {address.title()} "), connection_id))
            for who, client in (("colleague", colleague), ("outsider", outsider))
        }

    assert sees() == {"colleague": 0, "outsider": 0}, "contacts are their owner's own by default"
    assert owner.get(f"/api/v1/connections/{connection_id}").json()["sharing"] == "owner"

    answer = share(owner, connection_id, "workspace")
    assert answer.status_code == 200, answer.text
    assert answer.json()["sharing"] == "workspace"
    assert owner.get(f"/api/v1/connections/{connection_id}").json()["sharing"] == "workspace"
    assert sees() == {"colleague": 4 + 4 + 1, "outsider": 0}

    before = owner.get(f"/api/v1/connections/{connection_id}").json()
    for attempt in (
        colleague.post(f"/api/v1/connections/{connection_id}/pause"),
        colleague.post(f"/api/v1/connections/{connection_id}/sync"),
        colleague.delete(f"/api/v1/connections/{connection_id}"),
        colleague.get(f"/api/v1/connections/{connection_id}"),
        share(colleague, connection_id, "owner"),
        share(outsider, connection_id, "owner"),
    ):
        assert attempt.status_code == 404, (attempt.request.method, attempt.request.url, attempt.text)
    after = owner.get(f"/api/v1/connections/{connection_id}").json()
    assert (after["status"], after["sharing"]) == (before["status"], "workspace")
    assert after["capabilities"][0]["last_run"]["id"] == before["capabilities"][0]["last_run"]["id"]

    assert share(owner, connection_id, "everyone").status_code == 422
    assert share(owner, connection_id, "owner").status_code == 200
    assert sees() == {"colleague": 0, "outsider": 0}, "unsharing hides them again"
    assert len(read(owner, connection_id=connection_id)) == 4

    with google_hub.sessions() as session:
        changes = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.connection_id == connection_id, AuditEvent.action == "connection.sharing_changed")
            .order_by(AuditEvent.at)
        ).all()
        assert [(e.actor, e.detail["sharing"]) for e in changes] == [("olive", "workspace"), ("olive", "owner")]


def test_a_reconnect_keeps_the_owners_choice(google_hub: GoogleHub) -> None:
    account = new_account(google_hub.admin, contacts=1)
    workspace = f"ws-keep-{uuid.uuid4().hex[:6]}"
    browser = google_hub.browser(user="olive", workspace=workspace)
    connection_id = google_hub.connect(browser, account)
    owner = api(google_hub, "olive", workspace)
    assert share(owner, connection_id, "workspace").status_code == 200
    assert google_hub.connect(browser, account) == connection_id
    with google_hub.sessions() as session:
        assert session.get_one(Connection, connection_id).sharing == "workspace"
