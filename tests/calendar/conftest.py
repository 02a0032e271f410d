"""A hub with Google Contacts and Google Calendar on the sandbox: API in this process, a real worker and beat
(ticking every second, so a notification's delayed run starts soon), push channels to the hub's http address."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sandbox.admin_client import SandboxAdmin
from sync.models import SyncRun
from tests.conftest import wait_for
from tests.google.conftest import (
    CONTACTS_SCOPE,
    GoogleHub,
    admin,
    new_account,
    running_google_hub,
    sandbox_url,
)

__all__ = ["admin", "sandbox_url"]

CAPABILITY = "calendar"
AUTH = "https://www.googleapis.com/auth/"
CALENDAR_LIST = AUTH + "calendar.calendarlist.readonly"
CALENDAR_EVENTS = AUTH + "calendar.events.readonly"
CALENDAR_ENV = {
    "SYNCHUB_CONNECTORS": "google_contacts,google_calendar",
    "SYNCHUB_GOOGLE_CALENDAR__APP_REQUESTS_PER_MINUTE": "60000",
    "SYNCHUB_GOOGLE_CALENDAR__CONNECTION_REQUESTS_PER_MINUTE": "60000",
    "SYNCHUB_GOOGLE_CALENDAR__PAGE_SIZE": "20",
    "SYNCHUB_GOOGLE_CALENDAR__PUSH_ALLOW_HTTP": "true",
    "SYNCHUB_SCHEDULE__TICK_SECONDS": "1",
    # Longer than a channel's 7 days: the renewal task, when a test sends it, renews every live channel.
    "SYNCHUB_GOOGLE_CALENDAR__CHANNEL_RENEW_BEFORE_SECONDS": str(8 * 86400),
}


@dataclass
class CalendarHub:
    hub: GoogleHub

    @property
    def admin(self) -> SandboxAdmin:
        return self.hub.admin

    def account(self, contacts: int = 0) -> str:
        return new_account(self.admin, contacts=contacts)

    def connect(
        self, account: str, browser: httpx.Client | None = None, capabilities: str = "contacts,calendar", **kw: Any
    ) -> tuple[httpx.Client, uuid.UUID]:
        browser = browser or self.hub.browser(user=f"user-{uuid.uuid4().hex[:6]}", workspace="ws-cal")
        return browser, self.hub.connect(browser, account, capabilities=capabilities, **kw)

    def url(self, connection_id: uuid.UUID, resource_id: str | None = None) -> str:
        path = f"{self.hub.url}/api/v1/connections/{connection_id}/capabilities/{CAPABILITY}/resources"
        return f"{path}/{resource_id}" if resource_id else path

    def calendars(self, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, dict[str, Any]]:
        """The chooser's list by calendar name (read from Google again; the primary is selected the first time)."""
        answer = browser.get(self.url(connection_id))
        assert answer.status_code == 200, answer.text
        return {resource["name"]: resource for resource in answer.json()["resources"]}

    def choose(
        self, browser: httpx.Client, connection_id: uuid.UUID, resource_id: str, selected: bool
    ) -> dict[str, Any]:
        answer = browser.put(self.url(connection_id, resource_id), json={"selected": selected})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def runs(self, connection_id: uuid.UUID, resource: str | None = None) -> list[SyncRun]:
        with self.hub.sessions() as session:
            query = select(SyncRun).where(SyncRun.connection_id == connection_id, SyncRun.capability == CAPABILITY)
            if resource is not None:
                query = query.where(SyncRun.resource == resource)
            return list(session.scalars(query.order_by(SyncRun.created_at)))

    def settled(self, connection_id: uuid.UUID, resource: str, count: int, timeout: float = 60) -> list[SyncRun]:
        """Wait until the calendar has at least `count` runs and none is active."""

        def done() -> list[SyncRun] | None:
            runs = self.runs(connection_id, resource)
            if len(runs) >= count and all(run.status in ("succeeded", "failed", "cancelled") for run in runs):
                return runs
            return None

        found: list[SyncRun] = wait_for(done, timeout=timeout, interval=0.1, what="the calendar's runs to end")
        return found

    def sync(self, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, dict[str, Any]]:
        """ "Sync now" for the calendars: each selected calendar's run (by resource id) once it ended."""
        answer = browser.post(
            f"{self.hub.url}/api/v1/connections/{connection_id}/sync", params={"capability": CAPABILITY}
        )
        assert answer.status_code == 200, answer.text
        runs = {key.split("/", 1)[1]: run for key, run in answer.json()["runs"].items()}
        assert all(runs.values()), runs
        return {key: self.hub.wait_run(browser, connection_id, run) for key, run in runs.items()}

    def events(self, browser: httpx.Client, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
            answer = browser.get(f"{self.hub.url}/api/v1/events", params=query)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            found.extend(body["events"])
            cursor = body["next_cursor"]
            if not cursor:
                return found

    def calendar_calls(self, account: str, after: int = 0) -> list[dict[str, Any]]:
        return [
            dict(e)
            for e in self.admin.request_log(after)
            if e["path"].startswith("/calendar/v3") and e["account"] == account
        ]


@pytest.fixture(scope="package")
def cal(hub_env: dict[str, str], sandbox_url: str, admin: SandboxAdmin, jwt_secret: str) -> Iterator[CalendarHub]:
    """One hub, worker and beat for the whole package (each costs seconds to start and stop)."""
    with running_google_hub(hub_env, sandbox_url, admin, jwt_secret, CALENDAR_ENV, beat=True) as hub:
        yield CalendarHub(hub)


__all__ += ["CALENDAR_EVENTS", "CALENDAR_LIST", "CONTACTS_SCOPE", "cal"]
