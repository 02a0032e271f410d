"""CalDAV keeps the connector contract, on Radicale and on Xandikos (a calendar made for each reading)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from urllib.parse import unquote

import pytest

from connectors.base import Capability, Resource
from connectors.caldav.spec import SPEC
from tests.caldav.calendars import timed
from tests.caldav.ctag import Secrets
from tests.caldav.servers import CalDAVServer
from tests.contract import ConnectorContract, Grant, ProviderSandbox


class CalDAVSandbox:
    """The contract's provider: an account is a calendar on the server, a record one event in it."""

    def __init__(self, server: CalDAVServer) -> None:
        self.server = server
        self.url = server.url

    def seed(self, capability: str, records: int) -> str:
        with self.server.client() as client:
            calendar = client.principal().make_calendar(name=f"Contract {uuid.uuid4().hex[:6]}")
            for number in range(records):
                calendar.save_event(timed(f"seed-{uuid.uuid4().hex}", f"Seeded {number}", hour=8 + number % 10))
            return str(calendar.url)

    def add(self, capability: str, account: str) -> str:
        with self.server.client() as client:
            event = client.calendar(url=account).save_event(timed(f"added-{uuid.uuid4().hex}", "Added"))
            return unquote(event.url.path)

    def delete(self, capability: str, account: str, external_id: str) -> None:
        with self.server.client() as client:
            client.calendar(url=account).event_by_url(external_id).delete()

    def expire_cursor(self, capability: str, account: str) -> None:
        raise NotImplementedError("neither server can be told to forget its tokens; see the class's note")

    def grant(self, account: str, scopes: Sequence[str]) -> Grant:
        return Grant(frozenset(), Secrets(self.server), Resource(account, "Contract", {"sync_collection": True}))


class TestCalDAVContract(ConnectorContract):
    spec = SPEC
    settings_env = {"SYNCHUB_CALDAV__PAGE_SIZE": "2", "SYNCHUB_CALDAV__ALLOW_PRIVATE_HOSTS": "true"}
    invalid_settings_env = {"SYNCHUB_CALDAV__PAGE_SIZE": "0"}
    # CalDAV errors are XML bodies providers.md quotes as such, not JSON payloads; the answers that matter (401,
    # an invalid sync token on each server) are played by the real servers in test_caldav_sync.py, where an
    # invalid token is one the server never issued.
    test_provider_answer_is_classified = None  # type: ignore[assignment]
    test_an_expired_cursor_raises_cursor_expired = None  # type: ignore[assignment]

    def granted(self, provider: ProviderSandbox, account: str, capability: Capability) -> Grant:
        return provider.grant(account, [])

    @pytest.fixture(scope="class")
    @classmethod
    def provider(cls, caldav_server: CalDAVServer) -> CalDAVSandbox:
        return CalDAVSandbox(caldav_server)
