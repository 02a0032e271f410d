"""The one OAuth engine over Authlib: authorize URL, code exchange, refresh, revoke and userinfo."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

from core.errors import AuthRevoked, Retryable
from core.settings import ConfigError, Settings
from oauth.config import Account, OAuthProviderConfig, TokenSet

HTTP_TIMEOUT_SECONDS = 15.0


class GrantRefused(Exception):
    """The provider refused the code exchange; the message is safe to show."""


@dataclass(frozen=True)
class OAuthClient:
    """One provider's OAuth client credentials at its (possibly sandbox) endpoints."""

    config: OAuthProviderConfig
    client_id: str
    client_secret: str
    redirect_uri: str

    def session(self, access_token: str | None = None, **kwargs: Any) -> OAuth2Client:
        """An Authlib session with this client's credentials; given `access_token`, its requests carry it as a
        Bearer token. Hooks make their calls to the provider with it."""
        if access_token is not None:
            kwargs["token"] = {"access_token": access_token, "token_type": "Bearer"}
        return OAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method name, not a secret)
            revocation_endpoint_auth_method="client_secret_post",
            timeout=HTTP_TIMEOUT_SECONDS,
            **kwargs,
        )

    def authorization_url(
        self, scopes: Iterable[str], state: str, code_verifier: str, declined: frozenset[str] = frozenset()
    ) -> str:
        """Where the user consents to `scopes`; `declined` are those among them the user declined before, which
        some providers ask again for only with particular parameters (the config's `reask_params`)."""
        params = {**self.config.authorize_params, **(self.config.reask_params(declined) if declined else {})}
        with self.session(
            scope=self.config.scope_separator.join(scopes), code_challenge_method="S256" if self.config.pkce else None
        ) as session:
            url, _ = session.create_authorization_url(
                self.config.authorize_url, state=state, code_verifier=code_verifier, **params
            )
        return str(url)

    def exchange(self, authorization_response: str, state: str, code_verifier: str) -> TokenSet:
        """Trade the callback's code for tokens, then run the provider's `after_exchange` and `granted_scopes` hooks
        on the answer; Authlib checks the callback's state against ours."""
        try:
            with self.session(state=state) as session:
                body = session.fetch_token(
                    self.config.token_url,
                    authorization_response=authorization_response,
                    state=state,
                    code_verifier=code_verifier,
                )
            body = self.config.after_exchange(self, body)
            return TokenSet.from_response(body, self.config.granted_scopes(self, body))
        except OAuthError as exc:
            raise GrantRefused(f"{self.config.display_name} refused the sign-in ({exc.error})") from exc
        except httpx.HTTPError as exc:
            raise GrantRefused(f"{self.config.display_name} could not be reached ({type(exc).__name__})") from exc

    def refresh(self, refresh_token: str) -> TokenSet:
        """A new access token; `invalid_grant` means the user or provider revoked the grant."""
        with self.session() as session:
            try:
                body = session.refresh_token(self.config.token_url, refresh_token=refresh_token)
            except OAuthError as exc:
                if exc.error == "invalid_grant":
                    raise AuthRevoked(
                        f"{self.config.display_name} no longer accepts this connection's access: it was revoked "
                        f"or has expired ({exc.error})"
                    ) from exc
                if exc.error in ("invalid_client", "unauthorized_client", "deleted_client"):
                    # Our client id or secret, not the user's grant: every connection would fail the same way,
                    # so nothing is marked for reconnecting; the operator has to fix the settings.
                    raise Retryable(
                        f"{self.config.display_name} refused this hub's OAuth client ({exc.error}): check the "
                        f"client id and secret settings"
                    ) from exc
                raise Retryable(f"{self.config.display_name} token endpoint answered {exc.error}") from exc
            except httpx.HTTPError as exc:
                raise Retryable(
                    f"{self.config.display_name} token endpoint unreachable ({type(exc).__name__})"
                ) from exc
        # What was granted is read at consent, not here: a hook that asks the provider would cost a call per refresh,
        # and its failure would drop the tokens the provider just issued (a rotated refresh token among them).
        return TokenSet.from_response(body, frozenset())

    def revoke(self, token: str) -> bool:
        """Revoke at the provider through its `revoke` hook; True if it confirmed or the token was already dead."""
        return self.config.revoke(self, token)

    def account(self, access_token: str) -> Account:
        response = httpx.get(
            self.config.userinfo_url,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        if response.status_code != 200:
            raise GrantRefused(f"{self.config.display_name} did not say who signed in ({response.status_code})")
        return self.config.account_from_userinfo(response.json())


def new_code_verifier() -> str:
    return secrets.token_urlsafe(64)


def client_for(settings: Settings, provider: str) -> OAuthClient:
    """The configured OAuth client of an auth provider, at its sandbox URL when one is set."""
    from oauth.providers import PROVIDERS
    from oauth.providers import client_settings as configured_client

    client_settings = configured_client(settings, provider)
    if client_settings is None:
        raise ConfigError(f"SYNCHUB_{provider.upper()}__CLIENT_ID and __CLIENT_SECRET are not set")
    return OAuthClient(
        config=PROVIDERS[provider].at(client_settings.base_url),
        client_id=client_settings.client_id,
        client_secret=client_settings.client_secret.get_secret_value(),
        redirect_uri=f"{settings.public_url}/oauth/{provider}/callback",
    )
