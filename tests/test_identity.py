"""Identity: the CRM's JWT signs a browser or an API caller in; everything else is refused; workspaces never mix."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.identity import SIGNIN_AUDIENCE, IdentityError, verify_token
from core.models import Connection
from core.settings import IdentitySettings
from hub.app import create_app
from tests.conftest import LiveServer, settings_from_env

Mint = Callable[..., str]


def tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{header}.{payload}.{flipped}"


def test_session_link_sets_a_safe_cookie_and_redirects(live_api: str, user_token: Mint) -> None:
    token = user_token(ttl=60, audience=SIGNIN_AUDIENCE)
    with httpx.Client(base_url=live_api) as browser:
        response = browser.get("/session", params={"token": token, "next": "/?tab=google"})
        assert response.status_code == 303
        assert response.headers["location"] == "/?tab=google"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=43200" in cookie
        assert token.lower() not in cookie, "the cookie holds the hub's own session id, not the CRM's token"
        page = browser.get("/")
        assert page.status_code == 200
        assert "Signed in as user-1 in workspace ws-1" in page.text


@pytest.mark.parametrize("public_url", ["HTTPS://Hub.Example.com", "https://hub.example.com/", "Https://hub.example"])
def test_a_public_url_on_https_in_any_case_gives_a_secure_cookie(
    hub_env: dict[str, str], engine: Engine, user_token: Mint, public_url: str
) -> None:
    settings = settings_from_env({**hub_env, "SYNCHUB_PUBLIC_URL": public_url})
    with LiveServer(create_app(settings, engine)) as server:
        response = httpx.get(f"{server.url}/session", params={"token": user_token(ttl=60, audience=SIGNIN_AUDIENCE)})
    assert response.status_code == 303
    attributes = [part.strip().lower() for part in response.headers["set-cookie"].split(";")]
    assert "secure" in attributes and "httponly" in attributes


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda mint: tamper(mint(ttl=60, audience=SIGNIN_AUDIENCE)), "signature"),
        (lambda mint: mint(ttl=-120, audience=SIGNIN_AUDIENCE), "expired"),
        (lambda mint: mint(audience="another-service"), "aud"),
        (lambda mint: "not.a.jwt", "signature or format"),
    ],
)
def test_bad_tokens_are_refused_with_a_clear_page(
    live_api: str, user_token: Mint, make: Callable[[Mint], str], reason: str
) -> None:
    token = make(user_token)
    response = httpx.get(f"{live_api}/session", params={"token": token, "next": "/"}, headers={"accept": "text/html"})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "this sign-in link is not valid" in response.text.lower() and reason in response.text
    api = httpx.get(f"{live_api}/api/v1/me", headers={"authorization": f"Bearer {token}"})
    assert api.status_code == 401
    assert api.json()["error"] == "not signed in"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "evil", "/a\r\nb"])
def test_next_must_be_a_path_on_this_site(live_api: str, user_token: Mint, target: str) -> None:
    response = httpx.get(
        f"{live_api}/session", params={"token": user_token(ttl=60, audience=SIGNIN_AUDIENCE), "next": target}
    )
    assert response.status_code == 400
    assert "location" not in response.headers and "set-cookie" not in response.headers


def test_pages_and_api_without_a_session_are_refused(live_api: str) -> None:
    assert httpx.get(f"{live_api}/", headers={"accept": "text/html"}).status_code == 401
    assert httpx.get(f"{live_api}/api/v1/connections").status_code == 401
    bearer = httpx.get(f"{live_api}/api/v1/connections", headers={"authorization": "Basic dXNlcjpwYXNz"})
    assert bearer.status_code == 401


def test_another_workspaces_connection_answers_404(
    live_api: str, user_token: Mint, sessions: sessionmaker[Session]
) -> None:
    with transaction(sessions) as session:
        mine = Connection(workspace_id="ws-a", user_id="u-a", auth_provider="google", provider_account_id="sub-a")
        theirs = Connection(workspace_id="ws-b", user_id="u-a", auth_provider="google", provider_account_id="sub-b")
        session.add_all([mine, theirs])
    me = {"authorization": f"Bearer {user_token(user_id='u-a', workspace_id='ws-a')}"}
    listed = httpx.get(f"{live_api}/api/v1/connections", headers=me).json()["connections"]
    assert [item["id"] for item in listed] == [str(mine.id)]
    assert httpx.get(f"{live_api}/api/v1/connections/{mine.id}", headers=me).status_code == 200
    foreign = httpx.get(f"{live_api}/api/v1/connections/{theirs.id}", headers=me)
    assert foreign.status_code == 404
    assert "sub-b" not in foreign.text
    assert httpx.get(f"{live_api}/api/v1/connections/{uuid.uuid4()}", headers=me).status_code == 404


def test_rs256_tokens_verify_with_the_configured_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = IdentitySettings(jwt_algorithm="RS256", jwt_public_key=public_pem)
    key = RSAKey.import_key(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    import time

    claims = {"sub": "u-rs", "workspace_id": "ws-rs", "aud": "synchub", "exp": int(time.time()) + 60}
    principal = verify_token(jwt.encode({"alg": "RS256"}, claims, key), settings)
    assert (principal.user_id, principal.workspace_id) == ("u-rs", "ws-rs")
    hs_token = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key("x" * 40))
    with pytest.raises(IdentityError):
        verify_token(hs_token, settings)
    no_workspace = {key_: value for key_, value in claims.items() if key_ != "workspace_id"}
    with pytest.raises(IdentityError, match="workspace_id"):
        verify_token(jwt.encode({"alg": "RS256"}, no_workspace, key), settings)
