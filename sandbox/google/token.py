"""Google's token, revocation and OpenID endpoints, and the bearer-token check every Google API route uses."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from functools import cache
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.datastructures import FormData
from starlette.responses import Response

from sandbox.google.deps import GoogleDep
from sandbox.google.errors import BEARER_CHALLENGE, NO_STORE, ApiError, GoogleJSONResponse, oauth_error
from sandbox.google.scopes import OPENID
from sandbox.google.state import AuthCode, GoogleState, IssuedToken, OAuthClient
from sandbox.traffic import tag_request

ISSUER = "https://accounts.google.com"
KEY_ID = "sandbox-1"
EXPIRED_OR_REVOKED = "Token has been expired or revoked."

router = APIRouter()


@cache
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"})


def half_hash(value: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()[:16]).decode().rstrip("=")


def id_token(google: GoogleState, access: IssuedToken, nonce: str | None) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "azp": access.client_id,
        "aud": access.client_id,
        **google.accounts[access.account].claims(access.scopes),
        "at_hash": half_hash(access.value),
        "iat": now,
        "exp": now + 3600,
    }
    claims.update({"nonce": nonce} if nonce else {})
    return jwt.encode({"alg": "RS256", "kid": KEY_ID, "typ": "JWT"}, claims, signing_key())


def token_body(
    google: GoogleState, access: IssuedToken, refresh: IssuedToken | None, nonce: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access.value,
        "expires_in": int(google.settings.access_token_lifetime),
        "token_type": "Bearer",
    }
    if not google.settings.omit_token_scope:
        body["scope"] = " ".join(access.scopes)
    if refresh is not None:
        body["refresh_token"] = refresh.value
        if refresh.expires_at is not None:
            body["refresh_token_expires_in"] = int(refresh.expires_at - refresh.issued_at)
    if OPENID in access.scopes:
        body["id_token"] = id_token(google, access, nonce)
    return body


def basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise oauth_error(401, "invalid_client", "Unauthorized") from None
    return unquote(client_id), unquote(secret)


def authenticate_client(request: Request, form: FormData, google: GoogleState) -> OAuthClient:
    client_id, secret = basic_credentials(request) or (
        str(form.get("client_id", "")),
        str(form.get("client_secret", "")),
    )
    if not client_id:
        raise oauth_error(400, "invalid_request", "Could not determine client ID from request.")
    tag_request(request, app=client_id)
    client = google.clients.get(client_id)
    if client is None:
        raise oauth_error(401, "invalid_client", "The OAuth client was not found.")
    if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise oauth_error(401, "invalid_client", "Unauthorized")
    return client


def form_value(form: FormData, name: str) -> str:
    value = form.get(name)
    if not value:
        raise oauth_error(400, "invalid_request", f"Missing required parameter: {name}")
    return str(value)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def verify_pkce(code: AuthCode, verifier: str | None) -> None:
    if code.code_challenge is None:
        return
    if not verifier:
        raise oauth_error(400, "invalid_grant", "Missing code verifier.")
    computed = s256(verifier) if code.code_challenge_method == "S256" else verifier
    if not hmac.compare_digest(computed.encode(), code.code_challenge.encode()):
        raise oauth_error(400, "invalid_grant", "Invalid code verifier.")


def redeem_code(form: FormData, client: OAuthClient, google: GoogleState) -> AuthCode:
    code = google.codes.get(form_value(form, "code"))
    if code is None:
        raise oauth_error(400, "invalid_grant", "Malformed auth code.")
    if code.used or time.time() >= code.expires_at or code.client_id != client.client_id:
        raise oauth_error(400, "invalid_grant", "Bad Request")
    if form_value(form, "redirect_uri") != code.redirect_uri:
        raise oauth_error(400, "redirect_uri_mismatch", "Bad Request")
    verify_pkce(code, str(form.get("code_verifier") or "") or None)
    code.used = True
    return code


def authorization_code_grant(
    request: Request, form: FormData, client: OAuthClient, google: GoogleState
) -> dict[str, Any]:
    code = redeem_code(form, client, google)
    tag_request(request, account=code.account)
    access = google.issue_token("access", client.client_id, code.account, code.scopes)
    refresh = None
    if code.offline and code.consent_shown and not google.settings.withhold_refresh_tokens:
        refresh = google.issue_token("refresh", client.client_id, code.account, code.scopes)
        access.parent = refresh.value
    return token_body(google, access, refresh, code.nonce)


def refresh_token_grant(request: Request, form: FormData, client: OAuthClient, google: GoogleState) -> dict[str, Any]:
    refresh = google.tokens.get(form_value(form, "refresh_token"))
    if refresh is None or refresh.kind != "refresh" or refresh.client_id != client.client_id:
        raise oauth_error(400, "invalid_grant", "Bad Request")
    tag_request(request, account=refresh.account)
    if not refresh.live(time.time()):
        raise oauth_error(400, "invalid_grant", EXPIRED_OR_REVOKED)
    access = google.issue_token("access", client.client_id, refresh.account, refresh.scopes, parent=refresh.value)
    return token_body(google, access, None, None)


GRANTS: dict[str, Callable[[Request, FormData, OAuthClient, GoogleState], dict[str, Any]]] = {
    "authorization_code": authorization_code_grant,
    "refresh_token": refresh_token_grant,
}


@router.post("/token")
async def token(request: Request, google: GoogleDep) -> Response:
    form = await request.form()
    client = authenticate_client(request, form, google)
    grant_type = form_value(form, "grant_type")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
    return GoogleJSONResponse(grant(request, form, client, google), headers=NO_STORE)


@router.post("/revoke")
async def revoke(request: Request, google: GoogleDep) -> Response:
    form = await request.form()
    value = str(form.get("token") or request.query_params.get("token") or "")
    if not value:
        raise oauth_error(400, "invalid_request", "Missing required parameter: token")
    revoked = google.tokens.get(value)
    if revoked is None or not revoked.live(time.time()):
        raise oauth_error(400, "invalid_token", "Token expired or revoked")
    tag_request(request, account=revoked.account, app=revoked.client_id)
    google.revoke_grant(revoked.account, revoked.client_id)
    return Response(status_code=200, headers=NO_STORE)


def bearer_value(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.query_params.get("access_token") or request.query_params.get("oauth_token")


def access_token(request: Request, google: GoogleState) -> IssuedToken | None:
    """The live access token the request carries, tagging the request with its account and client."""
    token = google.tokens.get(bearer_value(request) or "")
    if token is None or token.kind != "access":
        return None
    tag_request(request, account=token.account, app=token.client_id)
    return token if token.live(time.time()) else None


@router.get("/v1/userinfo")
@router.get("/oauth2/v3/userinfo")
async def userinfo(request: Request, google: GoogleDep) -> Response:
    token = access_token(request, google)
    if token is None:
        body = {"error": "invalid_request", "error_description": "Invalid Credentials"}
        raise ApiError(GoogleJSONResponse(body, status_code=401, headers=BEARER_CHALLENGE))
    return GoogleJSONResponse(google.accounts[token.account].claims(token.scopes))


@router.get("/oauth2/v3/certs")
async def certs() -> Response:
    return GoogleJSONResponse({"keys": [signing_key().as_dict(private=False)]})


@router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> Response:
    base = str(request.base_url).rstrip("/")
    return GoogleJSONResponse(
        {
            "issuer": ISSUER,
            "authorization_endpoint": base + "/o/oauth2/v2/auth",
            "token_endpoint": base + "/token",
            "userinfo_endpoint": base + "/v1/userinfo",
            "revocation_endpoint": base + "/revoke",
            "jwks_uri": base + "/oauth2/v3/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
        }
    )
