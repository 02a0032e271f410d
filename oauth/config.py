"""Provider OAuth configurations as data, and the token set every flow produces."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

from core.models import ACCOUNT_ID_LENGTH, EMAIL_LENGTH, utcnow
from core.settings import http_url
from oauth import rfc7009

if TYPE_CHECKING:
    from oauth.client import OAuthClient

Token = Mapping[str, Any]
"""A token endpoint's answer as Authlib parses it."""


@dataclass(frozen=True)
class Account:
    """Who granted access: the provider's stable account id (never the email) and a label to show."""

    account_id: str
    email: str | None

    def __post_init__(self) -> None:
        """An account the hub could not store is no account: a hook building one from a strange answer fails here."""
        if not isinstance(self.account_id, str) or not 0 < len(self.account_id) <= ACCOUNT_ID_LENGTH:
            raise ValueError(f"the account id must be a string of 1 to {ACCOUNT_ID_LENGTH} characters")
        if self.email is not None and (not isinstance(self.email, str) or len(self.email) > EMAIL_LENGTH):
            raise ValueError(f"the account email must be a string of at most {EMAIL_LENGTH} characters")


def subject(info: Mapping[str, Any]) -> str:
    """The OpenID Connect `sub` of a userinfo answer: a string, never coerced from anything else."""
    sub = info["sub"]
    if not isinstance(sub, str):
        raise TypeError("sub is not a string")
    return sub


MAX_EXPIRES_IN = 10 * 365 * 24 * 3600
"""No token is promised for longer than ten years; a larger `expires_in` is garbage, not a lifetime."""


@dataclass(frozen=True)
class TokenSet:
    """A token answer as the hub keeps it; `scopes` are those the provider says it granted, never those asked for."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scopes: frozenset[str]

    @classmethod
    def from_response(cls, body: Mapping[str, Any], scopes: frozenset[str]) -> TokenSet:
        """The token set in a token endpoint's answer; ValueError names the field that is missing or malformed
        (never its value)."""
        access_token, refresh_token = body.get("access_token"), body.get("refresh_token") or None
        if not isinstance(access_token, str) or not access_token:
            raise ValueError("the answer has no access_token string")
        if refresh_token is not None and not isinstance(refresh_token, str):
            raise ValueError("the answer's refresh_token is not a string")
        return cls(access_token, refresh_token, expiry(body.get("expires_in")), scopes)


def expiry(expires_in: object) -> datetime | None:
    """When a token answer's `expires_in` (seconds, RFC 6749 5.1; a numeric string is tolerated) runs out."""
    if expires_in is None:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float | str):
        raise ValueError("the answer's expires_in is not a number")
    try:
        seconds = float(expires_in)
    except ValueError:
        raise ValueError("the answer's expires_in is not a number") from None
    if not 0 <= seconds <= MAX_EXPIRES_IN:  # also refuses NaN
        raise ValueError("the answer's expires_in is out of range")
    return utcnow() + timedelta(seconds=int(seconds))


class OAuthClientSettings(BaseModel):
    """An auth provider's OAuth client, read from `SYNCHUB_<PROVIDER>__*`."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    base_url: str | None = Field(default=None, description="Provider base URL override (the sandbox).")
    timeout_seconds: float = Field(
        default=15.0, gt=0, le=120, description="How long one call to the provider's OAuth endpoints may take."
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return http_url(value) if value else value


def unchanged(client: OAuthClient, token: Token) -> Token:
    """The standard `after_exchange`: the code exchange's answer is the grant."""
    return token


def scopes_in_answer(client: OAuthClient, token: Token) -> frozenset[str]:
    """The standard `granted_scopes`: the answer's space-separated `scope` (RFC 6749 5.1), short forms expanded.

    An answer without `scope` grants nothing as far as the hub knows: a provider that leaves it out says what it
    granted some other way, through its own hook.
    """
    return frozenset(client.config.expand_scope(scope) for scope in str(token.get("scope") or "").split())


def nothing_more(declined: frozenset[str]) -> Mapping[str, str]:
    """The standard `reask_params`: asking for a scope again needs no special parameter."""
    return {}


def bearer_only(client: OAuthClient, access_token: str) -> Mapping[str, str]:
    """The standard `userinfo_params`: the userinfo request carries the token as a Bearer header, nothing more."""
    return {}


def as_given(url: str) -> str:
    """The standard `callback_url`: the link back is taken as the provider sent it."""
    return url


@dataclass(frozen=True)
class OAuthProviderConfig:
    """Everything the one OAuth engine needs to talk to a provider; quirks are hooks, not branches.

    The hooks are Authlib-style compliance hooks, each defaulting to the standard behaviour:
    - `after_exchange(client, token) -> token`: runs on the code exchange's answer (a long-lived token exchange);
    - `granted_scopes(client, token) -> scopes`: what the provider granted, from the answer or by asking it;
    - `revoke(client, token) -> bool`: revoke a stored token, True once the provider confirmed it (RFC 7009);
    - `reask_params(declined) -> params`: authorize parameters that ask again for scopes the user declined;
    - `userinfo_params(client, access_token) -> params`: query parameters of the userinfo request (a proof the
      provider wants beside the token);
    - `callback_url(url) -> url`: the link back without an artifact the provider appends to it.
    `issues_refresh_tokens` is False for a provider whose grants never carry a refresh token.
    """

    name: str
    display_name: str
    authorize_url: str
    token_url: str
    revoke_url: str
    userinfo_url: str
    signin_scopes: tuple[str, ...]
    scope_separator: str = " "
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    pkce: bool = True
    scope_aliases: Mapping[str, str] = field(default_factory=dict)
    account_from_userinfo: Callable[[Mapping[str, Any]], Account] = lambda info: Account(subject(info), None)
    client_settings: type[OAuthClientSettings] = OAuthClientSettings
    after_exchange: Callable[[OAuthClient, Token], Token] = unchanged
    granted_scopes: Callable[[OAuthClient, Token], frozenset[str]] = scopes_in_answer
    revoke: Callable[[OAuthClient, str], bool] = rfc7009.revoke
    reask_params: Callable[[frozenset[str]], Mapping[str, str]] = nothing_more
    userinfo_params: Callable[[OAuthClient, str], Mapping[str, str]] = bearer_only
    callback_url: Callable[[str], str] = as_given
    issues_refresh_tokens: bool = True
    """False where the provider grants no refresh token (long-lived user tokens): such a grant is kept and used
    until its access token expires, then the connection needs reconnecting. True: a grant without one is refused."""
    base_url: str | None = None

    def expand_scope(self, scope: str) -> str:
        return self.scope_aliases.get(scope, scope)

    def at(self, base_url: str | None) -> OAuthProviderConfig:
        """The same provider served from `base_url` (the sandbox), keeping every real path."""
        if not base_url:
            return self
        moved = replace(self, base_url=base_url)
        return replace(
            moved,
            authorize_url=moved.url(self.authorize_url),
            token_url=moved.url(self.token_url),
            revoke_url=moved.url(self.revoke_url),
            userinfo_url=moved.url(self.userinfo_url),
        )

    def url(self, real: str) -> str:
        """Where a provider URL is served: itself, or its path and query at `base_url` (the sandbox). Hooks that
        call the provider beyond the four endpoints above reach it through this."""
        if not self.base_url:
            return real
        parts = urlsplit(real)
        return self.base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
