"""The OAuth callback takes only an authorization code, never answers 500, and revokes tokens it cannot keep."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from core.identity import issue_token
from tests.google.conftest import GoogleHub

TIMEOUT_SECONDS = 1


@pytest.fixture(scope="module")
def hub(google_hub_factory: Callable[..., GoogleHub]) -> GoogleHub:
    """A hub without a worker: nothing here may get as far as a sync. Its Google calls give up after a second."""
    return google_hub_factory(SYNCHUB_GOOGLE__TIMEOUT_SECONDS=str(TIMEOUT_SECONDS))


@pytest.mark.parametrize(("user", "workspace"), [("u" * 65, "ws-g"), ("user-g", "w" * 65)])
def test_identity_claims_longer_than_their_columns_are_refused_at_sign_in(
    hub: GoogleHub, user: str, workspace: str
) -> None:
    token = issue_token(hub.jwt_secret, user, workspace, 600)
    with httpx.Client(base_url=hub.url) as browser:
        signed_in = browser.get("/session", params={"token": token, "next": "/connect/google"})
        assert signed_in.status_code == 401, signed_in.text
        assert "set-cookie" not in signed_in.headers
        assert "longer than" in signed_in.text
        api = browser.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
        assert api.status_code == 401
