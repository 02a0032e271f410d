"""Google Calendar keeps the connector contract (on the account's primary calendar)."""

from __future__ import annotations

import pytest

from connectors.base import Resource, StreamContext
from connectors.google_calendar.spec import SPEC
from core.errors import AuthRevoked, CursorExpired, RateLimited
from sandbox.admin_client import SandboxAdmin
from tests.calendar.calendar_sandbox import CalendarSandbox
from tests.contract import Answer, ConnectorContract, Grant


class TestGoogleCalendarContract(ConnectorContract):
    spec = SPEC
    settings_env = {"SYNCHUB_GOOGLE_CALENDAR__PAGE_SIZE": "2"}
    invalid_settings_env = {"SYNCHUB_GOOGLE_CALENDAR__PAGE_SIZE": "2501"}
    # Bodies as providers.md quotes them (3.4, 1.8, 3.8); it gives no response headers for these answers.
    answers = {
        "full_sync_required__gone": Answer(410, CursorExpired),
        "auth_error__invalid_credentials": Answer(401, AuthRevoked),
        "rate_limit__too_many_requests": Answer(429, RateLimited),
        "rate_limit__forbidden": Answer(403, RateLimited),  # "rateLimitExceeded errors can return 403 or 429"
    }

    def context(self, account: str, grant: Grant, url: str) -> StreamContext:
        context = super().context(account, grant, url)
        return StreamContext(
            connection_id=context.connection_id,
            credentials=context.credentials,
            base_url=context.base_url,
            settings=context.settings,
            resource=Resource(account, account, {"primary": True}),
        )

    @pytest.fixture(scope="class")
    @classmethod
    def provider(cls, sandbox_url: str, admin: SandboxAdmin) -> CalendarSandbox:
        return CalendarSandbox(sandbox_url, admin)
