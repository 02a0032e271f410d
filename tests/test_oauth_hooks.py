"""The OAuth engine's compliance hooks, each driven through the engine against a small provider on loopback.

The provider here plays a Meta-like grant: a code exchange whose answer has no `scope` and a short token, a
long-lived token exchange, `/me/permissions` to read (GET) and to revoke (DELETE), and an RFC 7009 endpoint.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.models import utcnow
from oauth.client import GrantRefused, OAuthClient, new_code_verifier
from oauth.config import OAuthProviderConfig, Token
from oauth.providers.facebook import FACEBOOK
from tests.conftest import LiveServer

REAL = "https://provider.test"
REDIRECT_URI = "http://127.0.0.1:9/oauth/small/callback"
SHORT, LONG = "short-lived-token", "long-lived-token"
SIXTY_DAYS = 5183944


@dataclass
class SmallProvider:
    """What the provider was asked, in order: (method, path, form or query, bearer token)."""

    heard: list[tuple[str, str, dict[str, str], str | None]] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)

    async def _record(self, request: Request) -> tuple[dict[str, str], str | None]:
        values = {k: str(v) for k, v in (await request.form()).items()} | dict(request.query_params)
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        token = bearer if scheme == "Bearer" else None
        self.heard.append((request.method, request.url.path, values, token))
        return values, token

    async def token(self, request: Request) -> Response:
        form, _ = await self._record(request)
        if form.get("client_secret") != "small-secret":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") == "authorization_code" and form.get("code") == "the-code":
            return JSONResponse({"access_token": SHORT, "token_type": "bearer", "expires_in": 3600})
        if form.get("grant_type") == "exchange_token" and form.get("exchange_token") == SHORT:
            return JSONResponse({"access_token": LONG, "token_type": "bearer", "expires_in": SIXTY_DAYS})
        return JSONResponse({"error": "invalid_grant"}, status_code=400)

    async def permissions(self, request: Request) -> Response:
        _, bearer = await self._record(request)
        if bearer not in (SHORT, LONG) or bearer in self.revoked:
            return JSONResponse({"error": {"code": 190, "message": "Invalid OAuth access token."}}, status_code=400)
        if request.method == "DELETE":
            self.revoked.add(bearer)
            return JSONResponse({"success": True})
        return JSONResponse(
            {
                "data": [
                    {"permission": "pages_show_list", "status": "granted"},
                    {"permission": "leads_retrieval", "status": "declined"},
                    {"permission": "ads_management", "status": "expired"},
                ]
            }
        )

    async def me(self, request: Request) -> Response:
        values, bearer = await self._record(request)
        if values.get("proof") != f"proof-of-{bearer}":
            return JSONResponse({"error": {"code": 100, "message": "a proof is required"}}, status_code=400)
        return JSONResponse({"sub": "small-user"})

    async def revoke(self, request: Request) -> Response:
        form, _ = await self._record(request)
        if form.get("client_secret") != "small-secret":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth/token", self.token, methods=["POST"]),
                Route("/oauth/revoke", self.revoke, methods=["POST"]),
                Route("/me/permissions", self.permissions, methods=["GET", "DELETE"]),
                Route("/me", self.me, methods=["GET"]),
            ]
        )


def long_lived(client: OAuthClient, token: Token) -> Token:
    with client.session() as session:
        exchanged: Token = session.fetch_token(
            client.config.token_url, grant_type="exchange_token", exchange_token=token["access_token"]
        )
    return exchanged


def asked_permissions(client: OAuthClient, token: Token) -> frozenset[str]:
    with client.session(token["access_token"]) as session:
        answer = session.get(client.config.url(f"{REAL}/me/permissions"))
    answer.raise_for_status()
    return frozenset(p["permission"] for p in answer.json()["data"] if p["status"] == "granted")


def delete_permissions(client: OAuthClient, token: str) -> bool:
    with client.session(token) as session:
        answer = session.delete(client.config.url(f"{REAL}/me/permissions"))
    return answer.status_code == 200 and answer.json().get("success") is True


def rerequest(declined: frozenset[str]) -> Mapping[str, str]:
    return {"auth_type": "rerequest"}


SMALL = OAuthProviderConfig(
    name="small",
    display_name="Small",
    authorize_url=f"{REAL}/dialog/oauth",
    token_url=f"{REAL}/oauth/token",
    revoke_url=f"{REAL}/oauth/revoke",
    userinfo_url=f"{REAL}/me",
    signin_scopes=("public_profile",),
    scope_separator=",",
    issues_refresh_tokens=False,
)


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[SmallProvider, str]]:
    small = SmallProvider()
    with LiveServer(small.app()) as server:
        yield small, server.url


def client_of(provider: tuple[SmallProvider, str], **hooks: Any) -> OAuthClient:
    small, url = provider
    small.heard.clear()
    return OAuthClient(replace(SMALL, **hooks).at(url), "small-app", "small-secret", REDIRECT_URI)


def exchange(client: OAuthClient) -> Any:
    state = secrets.token_urlsafe(16)
    return client.exchange(f"{REDIRECT_URI}?code=the-code&state={state}", state, new_code_verifier())


def test_an_answer_without_scope_grants_nothing_unless_a_hook_says_otherwise(
    provider: tuple[SmallProvider, str],
) -> None:
    tokens = exchange(client_of(provider))
    assert tokens.access_token == SHORT
    assert tokens.scopes == frozenset(), "what was asked for is never taken as granted"


def test_granted_scopes_hook_asks_the_provider(provider: tuple[SmallProvider, str]) -> None:
    tokens = exchange(client_of(provider, granted_scopes=asked_permissions))
    assert tokens.scopes == {"pages_show_list"}, "declined and expired permissions are not granted"
    assert provider[0].heard[-1] == ("GET", "/me/permissions", {}, SHORT)


def test_after_exchange_swaps_the_short_token_for_a_long_one_before_scopes_are_read(
    provider: tuple[SmallProvider, str],
) -> None:
    tokens = exchange(client_of(provider, after_exchange=long_lived, granted_scopes=asked_permissions))
    assert tokens.access_token == LONG and tokens.refresh_token is None
    assert tokens.expires_at is not None and tokens.expires_at > utcnow() + timedelta(days=59)
    assert tokens.scopes == {"pages_show_list"}
    calls = [(method, path, values.get("grant_type"), bearer) for method, path, values, bearer in provider[0].heard]
    assert calls == [
        ("POST", "/oauth/token", "authorization_code", None),
        ("POST", "/oauth/token", "exchange_token", None),
        ("GET", "/me/permissions", None, LONG),
    ]


def test_revoke_hook_replaces_rfc7009(provider: tuple[SmallProvider, str]) -> None:
    client = client_of(provider, revoke=delete_permissions)
    assert client.revoke(LONG) is True
    assert provider[0].heard == [("DELETE", "/me/permissions", {}, LONG)]
    assert client.revoke(LONG) is False, "the provider no longer knows the token: it did not confirm"


def test_standard_revoke_posts_the_token_with_the_client_credentials_and_checks_the_answer(
    provider: tuple[SmallProvider, str],
) -> None:
    client = client_of(provider)
    assert client.revoke("some-token") is True
    method, path, form, _ = provider[0].heard[-1]
    assert (method, path) == ("POST", "/oauth/revoke")
    assert form == {"token": "some-token", "client_id": "small-app", "client_secret": "small-secret"}
    refused = OAuthClient(client.config, "small-app", "wrong-secret", REDIRECT_URI)
    assert refused.revoke("some-token") is False, "a 401 is not a revocation"


def test_reask_params_are_sent_only_for_declined_scopes(provider: tuple[SmallProvider, str]) -> None:
    client = client_of(provider, reask_params=rerequest)
    scopes = ["public_profile", "leads_retrieval"]

    def query(url: str) -> dict[str, list[str]]:
        return parse_qs(urlsplit(url).query)

    first = query(client.authorization_url(scopes, "state-1", new_code_verifier()))
    again = query(client.authorization_url(scopes, "state-2", new_code_verifier(), frozenset({"leads_retrieval"})))
    assert "auth_type" not in first
    assert again["auth_type"] == ["rerequest"] and again["scope"] == ["public_profile,leads_retrieval"]
    assert urlsplit(client.config.authorize_url).netloc == urlsplit(provider[1]).netloc


def test_userinfo_params_hook_adds_what_the_provider_wants_beside_the_token(
    provider: tuple[SmallProvider, str],
) -> None:
    plain = client_of(provider)
    with pytest.raises(GrantRefused):
        plain.account(LONG)
    signed = client_of(provider, userinfo_params=lambda client, token: {"proof": f"proof-of-{token}"})
    assert signed.account(LONG).account_id == "small-user"
    assert provider[0].heard[-1] == ("GET", "/me", {"proof": f"proof-of-{LONG}"}, LONG)


def test_callback_url_hook_drops_an_artifact_the_provider_appends_and_nothing_else(
    provider: tuple[SmallProvider, str],
) -> None:
    state = secrets.token_urlsafe(16)
    back = f"{REDIRECT_URI}?code=the-code&state={state}#_=_"
    with pytest.raises(GrantRefused, match="fragment"):
        client_of(provider).exchange(back, state, new_code_verifier())
    artifact = client_of(provider, callback_url=lambda url: url.removesuffix("#_=_"))
    assert artifact.exchange(back, state, new_code_verifier()).access_token == SHORT
    with pytest.raises(GrantRefused, match="fragment"):
        artifact.exchange(f"{REDIRECT_URI}?code=the-code&state={state}#access_token=x", state, new_code_verifier())
    assert FACEBOOK.callback_url(back) == back.removesuffix("#_=_")
