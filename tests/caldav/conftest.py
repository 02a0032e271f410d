from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from sandbox.admin_client import SandboxAdmin
from tests.caldav.servers import SERVERS, CalDAVServer, running
from tests.calendar.conftest import CalendarHub
from tests.google.conftest import GoogleHub, admin, running_google_hub, sandbox_url

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
    with running_google_hub(hub_env, sandbox_url, admin, jwt_secret, CALDAV_HUB_ENV, hub_class=ClosingHub) as hub:
        yield CalendarHub(hub)
        for browser in ClosingHub.opened:
            browser.close()
