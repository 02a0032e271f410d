from __future__ import annotations

import secrets
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from core.db import make_engine, session_factory
from hub.app import create_app
from sandbox.admin_client import SandboxAdmin
from tests.caldav.servers import SERVERS, CalDAVServer, running
from tests.calendar.conftest import CalendarHub
from tests.conftest import LiveServer, Worker, free_port, settings_from_env
from tests.google.conftest import GoogleHub, admin, google_env, sandbox_url

__all__ = ["admin", "sandbox_url"]


@pytest.fixture(scope="module", params=sorted(SERVERS))
def caldav_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    """Each test that takes it runs against Radicale and against Xandikos behind Basic auth."""
    folder: Path = tmp_path_factory.mktemp(request.param)
    with running(request.param, folder) as server:
        yield server


CALDAV_HUB_ENV = {
    "SYNCHUB_CONNECTORS": "google_contacts,google_calendar,caldav",
    "SYNCHUB_CALDAV__ALLOW_PRIVATE_HOSTS": "true",
    "SYNCHUB_CALDAV__TIMEOUT_SECONDS": "10",
    "SYNCHUB_CALDAV__APP_REQUESTS_PER_MINUTE": "60000",
    "SYNCHUB_CALDAV__CONNECTION_REQUESTS_PER_MINUTE": "60000",
    "SYNCHUB_GOOGLE_CALENDAR__APP_REQUESTS_PER_MINUTE": "60000",
    "SYNCHUB_GOOGLE_CALENDAR__CONNECTION_REQUESTS_PER_MINUTE": "60000",
}


class ClosingHub(GoogleHub):
    """A Google hub that remembers its browsers, to close their keep-alive connections before the server stops
    (an open one holds up its shutdown for seconds)."""

    opened: ClassVar[list[httpx.Client]] = []

    def browser(self, user: str = "user-g", workspace: str = "ws-g") -> httpx.Client:
        found = super().browser(user, workspace)
        self.opened.append(found)
        return found


@pytest.fixture(scope="package")
def caldav_hub(
    hub_env: dict[str, str], sandbox_url: str, admin: SandboxAdmin, jwt_secret: str
) -> Iterator[CalendarHub]:
    """One hub (API in this process) and a real worker for the package, with CalDAV and Google Calendar enabled
    (the sandbox plays Google, for the meeting seen through both)."""
    port = free_port()
    client_id, client_secret = f"synchub-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    admin.register_client(client_id, client_secret, [f"http://127.0.0.1:{port}/oauth/google/callback"])
    env = {**google_env(hub_env, sandbox_url, port, client_id, client_secret), **CALDAV_HUB_ENV}
    settings = settings_from_env(env)
    engine = make_engine(settings.database_url)
    worker = Worker(env, queues="webhooks,sync,maintenance", concurrency=2).start()
    with LiveServer(create_app(settings, engine), port=port) as server:
        hub = ClosingHub(
            server.url, env, settings, admin, client_id, client_secret, engine, session_factory(engine), jwt_secret
        )
        yield CalendarHub(hub)
        for browser in ClosingHub.opened:
            browser.close()
    worker.stop(signal.SIGKILL)
    engine.dispose()
