"""The fake Google authorization server against the real Authlib and google-auth clients."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from urllib.parse import urlencode

import google.auth.transport.requests
import google.oauth2.credentials
import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.sandbox.browser import answer_consent, authorize, callback_params, choose_account, forms
from tests.sandbox.conftest import (
    ADA,
    CALENDAR,
    CLIENT_ID,
    CLIENT_SECRET,
    CONTACTS,
    EMAIL,
    GRACE,
    PROFILE,
    REDIRECT_URI,
    Sandbox,
    list_all,
    people_service,
)

OAuthFactory = Callable[..., OAuth2Client]


def begin(sandbox: Sandbox, client: OAuth2Client, **params: str) -> tuple[str, str, str]:
    """Authorization URL, state and PKCE verifier, as the hub's begin step makes them."""
    verifier = generate_token(48)
    url, state = client.create_authorization_url(sandbox.authorize_url, code_verifier=verifier, **params)
    return url, state, verifier


def connect(
    sandbox: Sandbox, browser: httpx.Client, client: OAuth2Client, account: str = ADA, **params: str
) -> tuple[dict[str, str], dict[str, object]]:
    """The whole consent flow: callback parameters and the token response Authlib got for the code."""
    url, state, verifier = begin(sandbox, client, **params)
    final = authorize(browser, url, account=account)
    callback = callback_params(final)
    token = client.fetch_token(
        sandbox.token_url, authorization_response=final.headers["location"], state=state, code_verifier=verifier
    )
    return callback, dict(token)


def test_authlib_consent_code_exchange_and_refresh_with_pkce(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory
) -> None:
    client = oauth()
    callback, token = connect(sandbox, browser, client, login_hint=ADA, access_type="offline", prompt="consent")

    assert callback["authuser"] == "0" and callback["prompt"] == "consent" and callback["state"]
    assert callback["scope"].split() == ["openid", EMAIL, PROFILE, CONTACTS]
    assert token["scope"] == callback["scope"] and token["token_type"] == "Bearer" and token["expires_in"] == 3599
    assert str(token["refresh_token"]).startswith("1//")

    refreshed = client.refresh_token(sandbox.token_url, refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["scope"] == token["scope"] and refreshed["refresh_token"] == token["refresh_token"]
    people = people_service(sandbox, google.oauth2.credentials.Credentials(refreshed["access_token"]))
    assert people.people().connections().list(resourceName="people/me", personFields="names").execute(num_retries=0)


def test_id_token_is_signed_and_names_the_user(sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory) -> None:
    _, token = connect(sandbox, browser, oauth(), login_hint=GRACE, nonce="n-0S6")
    keys = KeySet.import_key_set(browser.get("/oauth2/v3/certs").json())

    claims = jwt.decode(str(token["id_token"]), keys).claims

    userinfo = browser.get("/v1/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    assert claims["iss"] == "https://accounts.google.com" and claims["aud"] == CLIENT_ID
    assert claims["email"] == GRACE and claims["nonce"] == "n-0S6" and claims["sub"] == userinfo["sub"]
    assert userinfo["email"] == GRACE and userinfo["email_verified"] is True and userinfo["name"] == "Grace Hopper"


def test_account_chooser_lists_seeded_accounts_and_signs_in_the_chosen_one(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory
) -> None:
    client = oauth()
    url, state, verifier = begin(sandbox, client)

    chooser = browser.get(url)
    final = answer_consent(browser, choose_account(browser, chooser, GRACE))
    token = client.fetch_token(
        sandbox.token_url, authorization_response=final.headers["location"], state=state, code_verifier=verifier
    )

    assert [f.hidden["account"] for f in forms(chooser)] == [ADA, GRACE]
    assert [t["account"] for t in sandbox.admin.tokens()] == [GRACE]
    assert (
        browser.get("/v1/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}).json()["email"]
        == GRACE
    )


def test_sign_in_scopes_are_always_granted_and_others_are_checkboxes(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory, people: Callable[[str], object]
) -> None:
    client = oauth(scope=f"openid email {CONTACTS} {CALENDAR}")
    url, state, verifier = begin(sandbox, client, login_hint=ADA)
    consent = browser.get(url)

    final = answer_consent(browser, consent, tick=[CALENDAR])
    token = client.fetch_token(
        sandbox.token_url, authorization_response=final.headers["location"], state=state, code_verifier=verifier
    )

    assert forms(consent)[0].checkboxes == [CONTACTS, CALENDAR]
    assert token["scope"].split() == ["openid", EMAIL, CALENDAR]
    with pytest.raises(HttpError) as refused:
        people(token["access_token"]).list(resourceName="people/me", personFields="names").execute(num_retries=0)
    error = json.loads(refused.value.content)["error"]
    assert refused.value.resp.status == 403 and error["status"] == "PERMISSION_DENIED"
    assert error["message"] == "Request had insufficient authentication scopes."
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def test_a_single_scope_is_allow_or_deny_unless_the_sandbox_forces_checkboxes(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory
) -> None:
    url, _, _ = begin(sandbox, oauth(scope=f"openid {CONTACTS}"), login_hint=ADA)

    plain = forms(browser.get(url))[0]
    sandbox.admin.google_settings(force_scope_checkboxes=True)
    forced = forms(browser.get(url))[0]

    assert plain.checkboxes == [] and plain.buttons == [("action", "deny"), ("action", "allow")]
    assert forced.checkboxes == [CONTACTS]


def test_deny_sends_access_denied_with_the_state(sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory) -> None:
    url, state, _ = begin(sandbox, oauth(), login_hint=ADA)

    callback = callback_params(authorize(browser, url, action="deny"))

    assert callback == {"error": "access_denied", "state": state}
    assert sandbox.admin.tokens() == []


def test_refresh_token_only_when_consent_was_shown(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory
) -> None:
    first_callback, first = connect(sandbox, browser, oauth(), login_hint=ADA, access_type="offline")
    again_callback, again = connect(sandbox, browser, oauth(), login_hint=ADA, access_type="offline")
    forced_callback, forced = connect(
        sandbox, browser, oauth(), login_hint=ADA, access_type="offline", prompt="consent"
    )

    assert first_callback["prompt"] == "consent" and "refresh_token" in first
    assert again_callback["prompt"] == "none" and "refresh_token" not in again
    assert forced_callback["prompt"] == "consent" and "refresh_token" in forced
    assert again["scope"] == first["scope"]


def test_online_access_gets_no_refresh_token(sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory) -> None:
    _, token = connect(sandbox, browser, oauth(), login_hint=ADA, prompt="consent")

    assert "refresh_token" not in token


def test_revoke_then_refresh_is_invalid_grant(sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory) -> None:
    client = oauth()
    _, token = connect(sandbox, browser, client, login_hint=ADA, access_type="offline")

    revoked = client.revoke_token(sandbox.url + "/revoke", token=token["access_token"], token_type_hint="access_token")
    again = client.revoke_token(sandbox.url + "/revoke", token=token["access_token"])

    assert revoked.status_code == 200
    assert again.status_code == 400 and again.json() == {
        "error": "invalid_token",
        "error_description": "Token expired or revoked",
    }
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(sandbox.token_url, refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_grant"
    assert refused.value.description == "Token has been expired or revoked."


def test_user_removing_access_kills_tokens_and_brings_consent_back(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory
) -> None:
    connect(sandbox, browser, oauth(), login_hint=ADA, access_type="offline")

    revoked = sandbox.admin.revoke_grant(ADA, CLIENT_ID)
    url, _, _ = begin(sandbox, oauth(), login_hint=ADA)

    assert revoked == 2
    assert all(not t["live"] for t in sandbox.admin.tokens(account=ADA))
    assert forms(browser.get(url))[0].action == "/o/oauth2/v2/auth/consent"


def test_google_auth_refreshes_an_expired_token_and_reports_revocation(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory
) -> None:
    _, token = connect(sandbox, browser, oauth(), login_hint=ADA, access_type="offline")
    credentials = google.oauth2.credentials.Credentials(
        token["access_token"],
        refresh_token=str(token["refresh_token"]),
        token_uri=sandbox.token_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    connections = people_service(sandbox, credentials).people().connections()

    assert sandbox.admin.expire_access_tokens(account=ADA) == 1
    persons, _ = list_all(connections, page_size=1000)
    sandbox.admin.revoke_grant(ADA, CLIENT_ID)

    assert len(persons) == 250 and credentials.token != token["access_token"]
    with pytest.raises(RefreshError) as refused:
        credentials.refresh(google.auth.transport.requests.Request())
    assert refused.value.args[1]["error"] == "invalid_grant"


def test_authorization_codes_are_single_use_and_expire(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory
) -> None:
    client = oauth()
    url, state, verifier = begin(sandbox, client, login_hint=ADA)
    final = authorize(browser, url)
    exchange = {
        "authorization_response": final.headers["location"],
        "state": state,
        "code_verifier": verifier,
    }
    client.fetch_token(sandbox.token_url, **exchange)

    with pytest.raises(OAuthError) as reused:
        client.fetch_token(sandbox.token_url, **exchange)
    sandbox.admin.google_settings(auth_code_lifetime=0)
    url, state, verifier = begin(sandbox, client, login_hint=ADA)
    stale = authorize(browser, url)
    with pytest.raises(OAuthError) as expired:
        client.fetch_token(
            sandbox.token_url, authorization_response=stale.headers["location"], state=state, code_verifier=verifier
        )

    assert (reused.value.error, reused.value.description) == ("invalid_grant", "Bad Request")
    assert (expired.value.error, expired.value.description) == ("invalid_grant", "Bad Request")


def token_request(browser: httpx.Client, **form: str) -> httpx.Response:
    return browser.post("/token", data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form})


def fresh_code(browser: httpx.Client, verifier: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid",
        "login_hint": ADA,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return callback_params(authorize(browser, "/o/oauth2/v2/auth?" + urlencode(params)))["code"]


def test_pkce_verifier_is_checked(sandbox: Sandbox, browser: httpx.Client) -> None:
    code = fresh_code(browser, "v" * 43)
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}

    missing = token_request(browser, **base)
    wrong = token_request(browser, **base, code_verifier="w" * 43)
    right = token_request(browser, **base, code_verifier="v" * 43)

    assert (missing.status_code, missing.json()["error_description"]) == (400, "Missing code verifier.")
    assert (wrong.status_code, wrong.json()["error_description"]) == (400, "Invalid code verifier.")
    assert right.status_code == 200


def test_redirect_uri_must_match_exactly(sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory) -> None:
    url, _, _ = begin(sandbox, oauth(), login_hint=ADA)
    code = callback_params(authorize(browser, url))["code"]

    page = browser.get(url.replace("callback", "callback%2F"))
    exchange = token_request(browser, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI + "/")

    assert page.status_code == 400 and "Error 400: redirect_uri_mismatch" in page.text
    assert "location" not in page.headers
    assert exchange.status_code == 400 and exchange.json() == {
        "error": "redirect_uri_mismatch",
        "error_description": "Bad Request",
    }


def test_client_errors_match_google(sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory) -> None:
    url, _, _ = begin(sandbox, oauth(), login_hint=ADA)

    unknown_page = browser.get(url.replace(CLIENT_ID, "nobody"))
    wrong_secret = token_request(browser, grant_type="refresh_token", refresh_token="1//x", client_secret="nope")
    unknown = token_request(browser, grant_type="refresh_token", refresh_token="1//x", client_id="nobody")
    garbage = token_request(browser, grant_type="refresh_token", refresh_token="1//x")
    bad_grant = token_request(browser, grant_type="password")

    assert unknown_page.status_code == 401 and "invalid_client" in unknown_page.text
    assert "The OAuth client was not found." in unknown_page.text
    assert (wrong_secret.status_code, wrong_secret.json()) == (
        401,
        {"error": "invalid_client", "error_description": "Unauthorized"},
    )
    assert (unknown.status_code, unknown.json()["error_description"]) == (401, "The OAuth client was not found.")
    assert (garbage.status_code, garbage.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "Bad Request"},
    )
    assert (bad_grant.status_code, bad_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert wrong_secret.headers["cache-control"].startswith("no-cache, no-store")


def test_refresh_token_limit_and_lifetimes_are_configurable(sandbox: Sandbox, browser: httpx.Client) -> None:
    sandbox.admin.google_settings(refresh_tokens_per_client=2, access_token_lifetime=120)
    minted = [sandbox.admin.mint_tokens(ADA, CLIENT_ID, [CONTACTS]) for _ in range(3)]

    oldest = token_request(browser, grant_type="refresh_token", refresh_token=minted[0]["refresh_token"])
    newest = token_request(browser, grant_type="refresh_token", refresh_token=minted[2]["refresh_token"])
    sandbox.admin.expire_tokens("refresh", account=ADA)
    expired = token_request(browser, grant_type="refresh_token", refresh_token=minted[2]["refresh_token"])

    assert oldest.json() == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    assert newest.status_code == 200 and newest.json()["expires_in"] == 120
    assert expired.json()["error_description"] == "Token has been expired or revoked."


def test_testing_mode_refresh_tokens_report_their_lifetime(sandbox: Sandbox) -> None:
    sandbox.admin.google_settings(refresh_token_lifetime=604800)

    minted = sandbox.admin.mint_tokens(ADA, CLIENT_ID, [CONTACTS])

    assert minted["refresh_token_expires_in"] == 604800


def test_userinfo_refuses_a_dead_token(sandbox: Sandbox, browser: httpx.Client) -> None:
    token = sandbox.admin.mint_tokens(ADA, CLIENT_ID, ["openid", "email"])["access_token"]
    sandbox.admin.expire_access_tokens()

    answer = browser.get("/v1/userinfo", headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 401 and answer.json()["error"] == "invalid_request"
    assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"scope": ""}, "invalid_request"),
        ({"scope": "openid https://evil.example/scope"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"prompt": "none consent"}, "invalid_request"),
    ],
)
def test_malformed_authorization_requests_get_an_error_page(
    sandbox: Sandbox, browser: httpx.Client, change: dict[str, str], error: str
) -> None:
    params = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": "openid"}

    page = browser.get("/o/oauth2/v2/auth", params={**params, **change})

    assert page.status_code == 400 and f"Error 400: {error}" in page.text and "location" not in page.headers


def test_prompt_none_without_consent_redirects_consent_required(
    sandbox: Sandbox, browser: httpx.Client, oauth: OAuthFactory
) -> None:
    url, state, _ = begin(sandbox, oauth(), login_hint=ADA, prompt="none")

    assert callback_params(browser.get(url)) == {"error": "consent_required", "state": state}
