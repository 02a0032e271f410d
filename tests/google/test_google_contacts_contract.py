"""Google Contacts keeps the connector contract."""

from __future__ import annotations

import pytest

from connectors.google_contacts.spec import SPEC
from core.errors import AuthRevoked, CursorExpired, RateLimited
from sandbox.admin_client import SandboxAdmin
from tests.contract import Answer, ConnectorContract
from tests.google.people_sandbox import PeopleSandbox


class TestGoogleContactsContract(ConnectorContract):
    spec = SPEC
    settings_env = {"SYNCHUB_GOOGLE_CONTACTS__PAGE_SIZE": "2"}
    invalid_settings_env = {"SYNCHUB_GOOGLE_CONTACTS__PAGE_SIZE": "0"}
    # Bodies as providers.md quotes them; it gives no response headers for these answers.
    answers = {
        "expired_sync_token__failed_precondition": Answer(400, CursorExpired),  # 2.2, People
        "auth_error__invalid_credentials": Answer(401, AuthRevoked),  # 1.8, Google's legacy error shape
        "rate_limit__rate_limit_exceeded": Answer(429, RateLimited),  # 3.8, the same shape's 429 example
    }

    @pytest.fixture(scope="class")
    @classmethod
    def provider(cls, sandbox_url: str, admin: SandboxAdmin) -> PeopleSandbox:
        return PeopleSandbox(sandbox_url, admin)
