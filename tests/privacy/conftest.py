"""One hub with every connector the privacy controls must cover (Google Contacts and Calendar, Facebook Lead Ads)
on one sandbox: API in this process, a real worker, and the CRM's service token set."""

from __future__ import annotations

import secrets
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.db import make_engine, session_factory
from core.models import Connection
from hub.app import create_app
from sandbox.admin_client import SandboxAdmin
from tests.calendar.conftest import CALENDAR_ENV, CalendarHub
from tests.conftest import LiveServer, Worker, free_port, settings_from_env
from tests.facebook.conftest import Facebook, FacebookHub, facebook_env
from tests.google.conftest import GoogleHub, admin, google_env, sandbox_url

__all__ = ["admin", "sandbox_url"]

SERVICE_TOKEN = "crm-service-token-" + secrets.token_urlsafe(24)


@dataclass
class PrivacyHub:
    google: GoogleHub
    facebook: FacebookHub
    service_token: str

    @property
    def url(self) -> str:
        return self.google.url

    @property
    def calendar(self) -> CalendarHub:
        return CalendarHub(self.google)

    def api(self, token: str) -> httpx.Client:
        """A client calling the hub's API with `Authorization: Bearer <token>` (the CRM's backend)."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def feed(self, browser: httpx.Client, segment: str, since: str, limit: int = 1000, **params: Any) -> list[Any]:
        """Every item of a kind's change feed since `since`, following the cursor."""
        found: list[Any] = []
        cursor: str | None = None
        while True:
            query = {"updated_since": since, "limit": limit, **params, **({"cursor": cursor} if cursor else {})}
            answer = browser.get(f"{self.url}/api/v1/{segment}", params=query)
            assert answer.status_code == 200, answer.text
            found.extend(answer.json()[segment])
            cursor = answer.json()["next_cursor"]
            if not cursor:
                return found


SEED = """
INSERT INTO crm_contacts (id, workspace_id, connection_id, provider, resource, external_id, display_name, emails,
    phones, created_at, updated_at)
SELECT gen_random_uuid(), :workspace, :connection, 'google', '', 'people/c' || i, 'Person ' || i,
    json_build_array(json_build_object('value', 'person' || i || '@example.com')), '[]', now(), now()
FROM generate_series(1, :count) AS i
"""


def holder(hub: PrivacyHub, workspace: str, user: str, account: str, contacts: int) -> uuid.UUID:
    """A connection of `user` holding `contacts` contacts, written straight to the tables."""
    with hub.google.sessions() as session, session.begin():
        connection = Connection(
            workspace_id=workspace, user_id=user, auth_provider="google", provider_account_id=account
        )
        session.add(connection)
        session.flush()
        session.execute(text(SEED), {"workspace": workspace, "connection": connection.id, "count": contacts})
        return connection.id


@pytest.fixture(scope="package")
def privacy_hub(
    hub_env: dict[str, str], sandbox_url: str, admin: SandboxAdmin, jwt_secret: str
) -> Iterator[PrivacyHub]:
    port = free_port()
    google_client, google_secret = f"synchub-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    admin.register_client(google_client, google_secret, [f"http://127.0.0.1:{port}/oauth/google/callback"])
    app_id, app_secret = str(secrets.randbelow(10**15) + 10**15), secrets.token_urlsafe(24)
    redirect = f"http://127.0.0.1:{port}/oauth/facebook/callback"
    admin.call("POST", "/facebook/apps", json={"app_id": app_id, "app_secret": app_secret, "redirect_uris": [redirect]})
    env = {
        **facebook_env(hub_env, sandbox_url, port, app_id, app_secret),
        **google_env(hub_env, sandbox_url, port, google_client, google_secret),
        **CALENDAR_ENV,
        "SYNCHUB_CONNECTORS": "google_contacts,google_calendar,facebook_leads",
        "SYNCHUB_PRIVACY__SERVICE_TOKEN": SERVICE_TOKEN,
    }
    settings = settings_from_env(env)
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    worker = Worker(env, queues="sync,maintenance", concurrency=1).start()
    with LiveServer(create_app(settings, engine), port=port) as server:
        google = GoogleHub(server.url, env, settings, admin, google_client, google_secret, engine, sessions, jwt_secret)
        facebook = FacebookHub(
            server.url, env, settings, admin, Facebook(admin), app_id, app_secret, engine, sessions, jwt_secret
        )
        yield PrivacyHub(google, facebook, SERVICE_TOKEN)
    worker.stop(signal.SIGKILL)
    engine.dispose()
