"""Provider OAuth configurations as data, and the token set every flow produces."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

from core.models import utcnow
from core.settings import http_url


@dataclass(frozen=True)
class Account:
    """Who granted access: the provider's stable account id (never the email) and a label to show."""

    account_id: str
    email: str | None


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scopes: frozenset[str] | None

    @classmethod
    def from_response(cls, body: Mapping[str, Any], expand: Callable[[str], str]) -> TokenSet:
        expires_in = body.get("expires_in")
        scope = body.get("scope")
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=body.get("refresh_token") or None,
            expires_at=utcnow() + timedelta(seconds=int(expires_in)) if expires_in is not None else None,
            scopes=frozenset(expand(s) for s in str(scope).split()) if scope is not None else None,
        )


class OAuthClientSettings(BaseModel):
    """An auth provider's OAuth client, read from `SYNCHUB_<PROVIDER>__*`."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    base_url: str | None = Field(default=None, description="Provider base URL override (the sandbox).")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return http_url(value) if value else value


@dataclass(frozen=True)
class OAuthProviderConfig:
    """Everything the one OAuth engine needs to talk to a provider; quirks are hooks, not branches."""

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
    account_from_userinfo: Callable[[Mapping[str, Any]], Account] = lambda info: Account(str(info["sub"]), None)
    client_settings: type[OAuthClientSettings] = OAuthClientSettings
    issues_refresh_tokens: bool = True
    """False where the provider grants no refresh token (long-lived user tokens): such a grant is kept and used
    until its access token expires, then the connection needs reconnecting. True: a grant without one is refused."""

    def expand_scope(self, scope: str) -> str:
        return self.scope_aliases.get(scope, scope)

    def at(self, base_url: str | None) -> OAuthProviderConfig:
        """The same provider served from `base_url` (the sandbox), keeping every real path."""
        if not base_url:
            return self

        def moved(url: str) -> str:
            parts = urlsplit(url)
            return base_url.rstrip("/") + parts.path

        from dataclasses import replace

        return replace(
            self,
            authorize_url=moved(self.authorize_url),
            token_url=moved(self.token_url),
            revoke_url=moved(self.revoke_url),
            userinfo_url=moved(self.userinfo_url),
        )
