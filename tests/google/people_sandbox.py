"""The People API as the sandbox plays it, in the shape the connector contract asks of a provider."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence

import httpx

from oauth.client import OAuthClient, new_code_verifier
from oauth.providers import PROVIDERS
from sandbox.admin_client import SandboxAdmin
from tests.contract import Grant, GrantCredentials
from tests.sandbox.browser import authorize

REDIRECT_URI = "http://127.0.0.1:9/oauth/google/callback"


def consent(admin: SandboxAdmin, client: OAuthClient, account: str, scopes: Sequence[str]) -> Grant:
    """The account consents in the sandbox's pages; the OAuth engine trades the code for tokens."""
    state, verifier = secrets.token_urlsafe(16), new_code_verifier()
    with httpx.Client(base_url=admin.base_url, follow_redirects=False, timeout=10) as browser:
        back = authorize(browser, client.authorization_url(scopes, state, verifier), account=account)
    assert back.status_code == 302, back.text
    tokens = client.exchange(back.headers["location"], state, verifier)
    return Grant(tokens.scopes, GrantCredentials(client, tokens))


class PeopleSandbox:
    def __init__(self, url: str, admin: SandboxAdmin) -> None:
        self.url, self.admin = url, admin
        client_id, client_secret = f"contract-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
        admin.register_client(client_id, client_secret, [REDIRECT_URI])
        self.client = OAuthClient(PROVIDERS["google"].at(url), client_id, client_secret, REDIRECT_URI)

    def seed(self, capability: str, records: int) -> str:
        email = f"contract-{uuid.uuid4().hex[:10]}@sandbox.test"
        self.admin.seed_account(email, contacts=records, name="Contract Person")
        return email

    def add(self, capability: str, account: str) -> str:
        return self.admin.add_contact(account, {"names": [{"givenName": "Added", "familyName": "Later"}]})

    def delete(self, capability: str, account: str, external_id: str) -> None:
        self.admin.delete_contact(account, external_id)

    def expire_cursor(self, capability: str, account: str) -> None:
        self.admin.expire_sync_tokens(account)

    def grant(self, account: str, scopes: Sequence[str]) -> Grant:
        return consent(self.admin, self.client, account, scopes)
