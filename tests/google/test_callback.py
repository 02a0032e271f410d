"""The OAuth callback takes only an authorization code, never answers 500, and revokes tokens it cannot keep."""

from __future__ import annotations

import http.client
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select

from core.identity import issue_token
from core.models import Connection
from sandbox.admin_client import FaultRule
from tests import signin
from tests.google.conftest import CONTACTS_SCOPE, GoogleHub, new_account

TIMEOUT_SECONDS = 1
SCOPES = ["openid", "https://www.googleapis.com/auth/userinfo.email", CONTACTS_SCOPE]


@pytest.fixture(scope="module")
def hub(google_hub_factory: Callable[..., GoogleHub]) -> GoogleHub:
    """A hub without a worker: nothing here may get as far as a sync. Its Google calls give up after a second."""
    return google_hub_factory(SYNCHUB_GOOGLE__TIMEOUT_SECONDS=str(TIMEOUT_SECONDS))


@pytest.fixture(autouse=True)
def no_faults(hub: GoogleHub) -> Iterator[None]:
    yield
    hub.admin.clear_faults()


def connections_of(hub: GoogleHub, account: str) -> list[Connection]:
    with hub.sessions() as session:
        return list(session.scalars(select(Connection).where(Connection.account_email == account)))


def connection_count(hub: GoogleHub) -> int:
    with hub.sessions() as session:
        return len(list(session.scalars(select(Connection.id).where(Connection.user_id == "user-g"))))


def requests_to(hub: GoogleHub, path: str, after: int) -> list[str]:
    return [f"{e['method']} {e['path']}" for e in hub.admin.request_log(after) if e["path"] == path]


def live_tokens(hub: GoogleHub, account: str, client_id: str | None = None) -> list[str]:
    return [t["kind"] for t in hub.admin.tokens(account=account, client_id=client_id or hub.client_id) if t["live"]]


def callback_query(back: httpx.Response) -> dict[str, str]:
    assert back.status_code == 302, back.text
    return dict(parse_qsl(urlsplit(back.headers["location"]).query))


def raw_get(hub: GoogleHub, browser: httpx.Client, target: str) -> tuple[int, str]:
    """GET a request target exactly as written (httpx would drop a `#` fragment), with the browser's cookie."""
    cookie = browser.cookies.get(hub.settings.identity.cookie_name)
    connection = http.client.HTTPConnection(urlsplit(hub.url).netloc, timeout=30)
    try:
        connection.request("GET", target, headers={"Cookie": f"{hub.settings.identity.cookie_name}={cookie}"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_token_in_a_fragment_is_refused_without_reaching_the_provider(hub: GoogleHub) -> None:
    """An attacker's fragment carries tokens that Google issued to another app; the hub must not take them."""
    account = new_account(hub.admin, contacts=3)
    other_app = f"other-{uuid.uuid4().hex[:8]}"
    hub.admin.register_client(other_app, secrets.token_urlsafe(16), ["http://127.0.0.1:9/cb"])
    stolen = hub.admin.mint_tokens(account, other_app, SCOPES)
    browser = hub.browser()
    state = callback_query(hub.consent(browser, account))["state"]
    fragment = urlencode({**{k: stolen[k] for k in ("access_token", "refresh_token", "scope")}, "state": state})
    mark = hub.log_mark()

    status, page = raw_get(hub, browser, f"/oauth/google/callback?state={state}#token_type=Bearer&{fragment}")

    assert status == 400, page
    # uvicorn's httptools parser drops a request target's fragment before the app (the link then carries no code);
    # its h11 parser passes it on, and the hub refuses the fragment itself. Either way nothing is taken from it.
    assert "only a sign-in code" in page.lower() or "without a sign-in code" in page.lower(), page
    assert connections_of(hub, account) == []
    assert requests_to(hub, "/v1/userinfo", mark) == [], "the stolen token was tried on the provider"
    assert sorted(live_tokens(hub, account, other_app)) == ["access", "refresh"], "not ours to revoke"


@pytest.mark.parametrize("spoil", ["drop", "xcode"])
def test_a_callback_without_a_code_sends_nothing_to_the_token_endpoint(hub: GoogleHub, spoil: str) -> None:
    account = new_account(hub.admin, contacts=0)
    browser = hub.browser()
    query = callback_query(hub.consent(browser, account))
    code = query.pop("code")
    if spoil == "xcode":
        query["xcode"] = code
    mark = hub.log_mark()

    page = browser.get(f"{hub.url}/oauth/google/callback", params=query)

    assert page.status_code == 400, page.text
    assert "without a sign-in code" in page.text
    assert requests_to(hub, "/token", mark) == [], "no client_credentials request with our secret"
    assert connections_of(hub, account) == []


def spoiled_token_answer(hub: GoogleHub, account: str, answer: str) -> tuple[str, bool]:
    """A token endpoint answer the hub cannot keep, and whether it carries real tokens (which must be revoked)."""
    if answer == "html":
        return "<html><body>Service Unavailable</body></html>", False
    if answer == "a list":
        return json.dumps([{"access_token": "ya29.not-a-token", "token_type": "Bearer"}]), False
    real = hub.admin.mint_tokens(account, hub.client_id, SCOPES)
    tokens = {k: real[k] for k in ("access_token", "refresh_token", "scope", "token_type")}
    spoiled = {
        "no access token": {"refresh_token": real["refresh_token"], "expires_in": 3599},
        "a numeric access token": {**tokens, "access_token": 12345},
        "expires_in a word": {**tokens, "expires_in": "soon"},
        "expires_in a list": {**tokens, "expires_in": [3599]},
        "expires_in beyond any date": {**tokens, "expires_in": 10**30},
    }
    return json.dumps(spoiled[answer]), True


@pytest.mark.parametrize(
    "answer",
    [
        "html",
        "a list",
        "no access token",
        "a numeric access token",
        "expires_in a word",
        "expires_in a list",
        "expires_in beyond any date",
    ],
)
def test_a_token_answer_the_hub_cannot_read_gives_a_clear_page_and_is_revoked(hub: GoogleHub, answer: str) -> None:
    account = new_account(hub.admin, contacts=0)
    body, carries_tokens = spoiled_token_answer(hub, account, answer)
    browser = hub.browser()
    back = hub.consent(browser, account)
    hub.admin.set_faults([FaultRule(path_prefix="/token", body=body, times=1)])
    mark = hub.log_mark()

    page = browser.get(back.headers["location"])

    assert page.status_code == 502, page.text
    assert "Google answered the sign-in with something synchub cannot read" in page.text
    assert "Nothing was connected" in page.text
    assert connections_of(hub, account) == []
    assert live_tokens(hub, account) == [], f"{answer}: issued tokens still live"
    assert bool(requests_to(hub, "/revoke", mark)) == carries_tokens


USERINFO_ANSWERS = {
    "html": "<html>Temporarily unavailable</html>",
    "no sub": json.dumps({"email": "someone@sandbox.test"}),
    "a list": json.dumps([{"sub": "1234", "email": "someone@sandbox.test"}]),
    "an empty sub": json.dumps({"sub": "", "email": "someone@sandbox.test"}),
    "a sub longer than its column": json.dumps({"sub": "1" * 256, "email": "someone@sandbox.test"}),
    "an email longer than its column": json.dumps({"sub": "1234", "email": "a" * 310 + "@sandbox.test"}),
    "an email that is a list": json.dumps({"sub": "1234", "email": ["someone@sandbox.test"]}),
}


@pytest.mark.parametrize("answer", [*USERINFO_ANSWERS, "a timeout"])
def test_a_userinfo_answer_the_hub_cannot_keep_gives_a_clear_page_and_revokes_the_grant(
    hub: GoogleHub, answer: str
) -> None:
    account = new_account(hub.admin, contacts=0)
    browser = hub.browser()
    back = hub.consent(browser, account)
    fault = (
        FaultRule(path_prefix="/v1/userinfo", latency_ms=TIMEOUT_SECONDS * 1000 + 1500, times=1)
        if answer == "a timeout"
        else FaultRule(path_prefix="/v1/userinfo", body=USERINFO_ANSWERS[answer], times=1)
    )
    hub.admin.set_faults([fault])
    mark = hub.log_mark()
    before = connection_count(hub)

    page = browser.get(back.headers["location"])

    assert page.status_code == 502, page.text
    assert "Nothing was connected" in page.text
    assert requests_to(hub, "/token", mark) == ["POST /token"], "the code was exchanged for real"
    assert connection_count(hub) == before
    assert live_tokens(hub, account) == [], f"{answer}: the tokens issued for the code are still live"
    assert requests_to(hub, "/revoke", mark), "the sandbox never saw a revoke"


def test_a_good_callback_still_connects(hub: GoogleHub) -> None:
    account = new_account(hub.admin, contacts=0)
    browser = hub.browser()
    connection_id = hub.connect(browser, account)
    assert [c.id for c in connections_of(hub, account)] == [connection_id]
    assert sorted(live_tokens(hub, account)) == ["access", "refresh"]


@pytest.mark.parametrize(("user", "workspace"), [("u" * 65, "ws-g"), ("user-g", "w" * 65)])
def test_identity_claims_longer_than_their_columns_are_refused_at_sign_in(
    hub: GoogleHub, user: str, workspace: str
) -> None:
    token = issue_token(hub.jwt_secret, user, workspace, 600)
    with httpx.Client() as browser:
        signed_in = browser.get(signin.signin_link(hub.url, hub.jwt_secret, user, workspace, "/connect/google"))
        assert signed_in.status_code == 401, signed_in.text
        assert "set-cookie" not in signed_in.headers
        assert "longer than" in signed_in.text
        api = browser.get(f"{hub.url}/api/v1/me", headers={"authorization": f"Bearer {token}"})
        assert api.status_code == 401
