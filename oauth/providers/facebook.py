"""Facebook Login (manual flow) and the Graph calls around it: https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow

Meta issues no refresh token: the code's short-lived token is exchanged at once for a long-lived one (about 60
days), whose end (or its data access's, from `debug_token`, whichever comes first) is the grant's expiry. What was
granted is read from `/me/permissions` (declined permissions are left out, and asked again with
`auth_type=rerequest`); revoking is `DELETE /me/permissions`. Every Graph call carries `appsecret_proof`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from oauth.config import Account, OAuthProviderConfig, Token

if TYPE_CHECKING:
    from oauth.client import OAuthClient

log = logging.getLogger(__name__)

GRAPH_VERSION = "v25.0"
GRAPH = f"https://graph.facebook.com/{GRAPH_VERSION}"
LOGIN_REDIRECT_ARTIFACT = "#_=_"
"""Facebook appends this fragment to the redirect after login; a browser keeps it to itself, but a client that
copies the whole link back must not have it refused as a fragment carrying tokens."""


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """HMAC-SHA256 of the token keyed with the app secret, as the SDK's session computes it (providers.md 4.8)."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def _signed(client: OAuthClient, access_token: str) -> dict[str, str]:
    return {"access_token": access_token, "appsecret_proof": appsecret_proof(client.client_secret, access_token)}


def _graph(client: OAuthClient, method: str, path: str, params: Mapping[str, str]) -> Any:
    """One Graph call through the client's session; ValueError (a grant the hub cannot keep) unless it is a 200
    with a JSON object."""
    with client.session() as session:
        response = session.request(method, client.config.url(GRAPH + path), params=dict(params), withhold_token=True)
    if response.status_code != 200:
        raise ValueError(f"Facebook answered {path} with {response.status_code}")
    body = response.json()
    if not isinstance(body, Mapping):
        raise TypeError(f"Facebook's answer to {path} is not a JSON object")
    return body


def _long_lived(client: OAuthClient, token: Token) -> Token:
    """The code's short-lived token exchanged for a long-lived one, whose expiry is brought forward to the end of
    its data access when `debug_token` says that comes first."""
    short = token.get("access_token")
    if not isinstance(short, str) or not short:
        raise ValueError("the answer has no access_token string")
    params = {
        "grant_type": "fb_exchange_token",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "fb_exchange_token": short,
    }
    long = dict(_graph(client, "GET", "/oauth/access_token", params))
    access = long.get("access_token")
    if not isinstance(access, str) or not access:
        raise ValueError("the long-lived exchange answered no access_token string")
    try:
        ends = _ends(client, access)
    except (ValueError, TypeError, httpx.HTTPError) as exc:  # the token is good; only its data access end is unknown
        log.warning("debug_token failed", extra={"provider": "facebook", "error": type(exc).__name__})
        ends = None
    if ends is not None:
        long["expires_in"] = max(0, int(ends - time.time()))
    return long


def _ends(client: OAuthClient, access_token: str) -> float | None:
    """The earlier of the token's expiry and its data access's end per `debug_token` (0 means never); None when
    neither is given."""
    app_token = f"{client.client_id}|{client.client_secret}"
    data = _graph(client, "GET", "/debug_token", {"input_token": access_token, "access_token": app_token}).get("data")
    if not isinstance(data, Mapping):
        raise TypeError("debug_token answered no data object")
    ends = [float(data[key]) for key in ("expires_at", "data_access_expires_at") if _positive(data.get(key))]
    return min(ends) if ends else None


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _permissions(client: OAuthClient, token: Token) -> frozenset[str]:
    """Granted permissions from `/me/permissions`; declined and expired ones are not granted."""
    body = _graph(client, "GET", "/me/permissions", _signed(client, str(token["access_token"])))
    entries = body.get("data")
    if not isinstance(entries, list):
        raise TypeError("/me/permissions answered no data list")
    return frozenset(
        str(entry["permission"])
        for entry in entries
        if isinstance(entry, Mapping) and entry.get("status") == "granted" and isinstance(entry.get("permission"), str)
    )


def _revoke(client: OAuthClient, access_token: str) -> bool:
    """`DELETE /me/permissions` ends the user's whole grant to the app; a token Facebook no longer accepts (190)
    has no grant left to end."""
    with client.session() as session:
        response = session.request(
            "DELETE",
            client.config.url(GRAPH + "/me/permissions"),
            params=_signed(client, access_token),
            withhold_token=True,
        )
    if response.status_code == 200:
        body = response.json()
        return isinstance(body, Mapping) and body.get("success") in (True, "true")
    try:
        error = response.json().get("error", {})
    except ValueError:
        return False
    return isinstance(error, Mapping) and error.get("code") == 190


def _account(info: Mapping[str, Any]) -> Account:
    account_id = info["id"]
    if not isinstance(account_id, str):
        raise TypeError("id is not a string")
    email = info.get("email")
    return Account(account_id=account_id, email=email if isinstance(email, str) else None)


def _without_login_artifact(url: str) -> str:
    return url.removesuffix(LOGIN_REDIRECT_ARTIFACT)


FACEBOOK = OAuthProviderConfig(
    name="facebook",
    display_name="Facebook",
    authorize_url=f"https://www.facebook.com/{GRAPH_VERSION}/dialog/oauth",
    token_url=f"{GRAPH}/oauth/access_token",
    revoke_url=f"{GRAPH}/me/permissions",
    userinfo_url=f"{GRAPH}/me?fields=id,name,email",
    signin_scopes=("public_profile",),
    scope_separator=",",
    pkce=False,
    account_from_userinfo=_account,
    after_exchange=_long_lived,
    granted_scopes=_permissions,
    revoke=_revoke,
    reask_params=lambda declined: {"auth_type": "rerequest"},
    userinfo_params=lambda client, token: _signed(client, token),
    callback_url=_without_login_artifact,
    issues_refresh_tokens=False,
)
