"""The one OAuth engine over Authlib: authorize URL, code exchange, refresh, revoke and userinfo."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

from core.errors import AuthRevoked, Retryable
from core.settings import ConfigError, Settings
from oauth.config import Account, OAuthProviderConfig, Token, TokenSet

HTTP_TIMEOUT_SECONDS = 15.0
UNREADABLE = (ValueError, TypeError, KeyError, OverflowError)
"""What reading a provider's malformed answer raises, in Authlib or in the hub."""

log = logging.getLogger(__name__)


class GrantRefused(Exception):
    """The sign-in cannot become a grant; the message is safe to show. `status` is 400 when the callback or the
    provider refused it, 502 when the provider could not be reached or answered something unreadable."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OAuthClient:
    """One provider's OAuth client credentials at its (possibly sandbox) endpoints."""

    config: OAuthProviderConfig
    client_id: str
    client_secret: str
    redirect_uri: str
    timeout: float = HTTP_TIMEOUT_SECONDS

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
            timeout=self.timeout,
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
        """Trade the callback's authorization code for tokens, then run the provider's `after_exchange` and
        `granted_scopes` hooks on the answer.

        Only an authorization-code exchange: the callback must carry exactly one `code` and our `state`, and no
        fragment (Authlib would take a fragment's tokens as an implicit grant, and a callback without a code as a
        client_credentials request). Tokens in an answer the hub cannot keep are revoked before GrantRefused.
        """
        code = authorization_code(self.config.callback_url(authorization_response), state)
        answers: list[Token] = []

        def keep(response: httpx.Response) -> httpx.Response:
            answers.append(readable(response))
            return response

        try:
            with self.session() as session:
                session.register_compliance_hook("access_token_response", keep)
                body = session.fetch_token(
                    self.config.token_url, grant_type="authorization_code", code=code, code_verifier=code_verifier
                )
            body = self.config.after_exchange(self, body)
            answers.append(body)
            return TokenSet.from_response(body, self.config.granted_scopes(self, body))
        except OAuthError as exc:
            self.discard(*issued(answers))
            raise GrantRefused(f"{self.config.display_name} refused the sign-in ({exc.error}).") from exc
        except httpx.HTTPError as exc:
            self.discard(*issued(answers))
            raise GrantRefused(f"{self.config.display_name} could not be reached ({type(exc).__name__}).", 502) from exc
        except UNREADABLE as exc:
            self.discard(*issued(answers))
            raise GrantRefused(
                f"{self.config.display_name} answered the sign-in with something synchub cannot read ({exc}).", 502
            ) from exc

    def discard(self, *tokens: str | None) -> None:
        """Revoke tokens the provider issued that the hub cannot keep, best effort and each once; give refresh
        tokens first (revoking one ends its access tokens too, RFC 7009 2.1). Logs counts, never a token."""
        wanted = list(dict.fromkeys(t for t in tokens if t))
        confirmed = 0
        for token in wanted:
            try:
                confirmed += self.revoke(token)
            except (httpx.HTTPError, OAuthError) as exc:
                failed = {"provider": self.config.name, "error_type": type(exc).__name__}
                log.warning("revoking an unkept token failed", extra=failed)
        if wanted:
            log.info(
                "unkept tokens revoked",
                extra={"provider": self.config.name, "tokens": len(wanted), "confirmed": confirmed},
            )

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
        """Who signed in, from the provider's userinfo endpoint through the config's `account_from_userinfo`."""
        name = self.config.display_name
        try:
            response = httpx.get(
                self.config.userinfo_url,
                params=self.config.userinfo_params(self, access_token),
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise GrantRefused(f"{name} could not be reached to say who signed in ({reason}).", 502) from exc
        if response.status_code != 200:
            raise GrantRefused(f"{name} did not say who signed in ({response.status_code}).", 502)
        try:
            info = response.json()
            if not isinstance(info, Mapping):
                raise TypeError("the answer is not a JSON object")
            return self.config.account_from_userinfo(info)
        except UNREADABLE as exc:
            raise GrantRefused(f"{name} did not say who signed in in a form synchub can keep ({exc}).", 502) from exc


def authorization_code(authorization_response: str, state: str) -> str:
    """The one `code` of a callback URL that carries our `state` and no fragment; GrantRefused otherwise."""
    if "#" in authorization_response:
        raise GrantRefused(
            "The link back carried a # fragment: synchub takes only a sign-in code from the provider's consent page, "
            "never tokens in the link."
        )
    params = parse_qs(urlsplit(authorization_response).query, keep_blank_values=True)
    states, codes = params.get("state", []), [c for c in params.get("code", []) if c]
    if len(states) != 1 or not hmac.compare_digest(states[0].encode(), state.encode()):
        raise GrantRefused("The link back does not carry this sign-in's state.")
    if len(codes) != 1:
        raise GrantRefused("The provider sent you back without a sign-in code.")
    return codes[0]


def readable(response: httpx.Response) -> Token:
    """A token endpoint's answer as JSON, or nothing when it is not a JSON object (Authlib then says why)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, Mapping) else {}


def issued(answers: Iterable[Token]) -> list[str]:
    """The tokens in token answers, refresh tokens first; values that are not strings are no tokens."""
    found = [a.get(kind) for kind in ("refresh_token", "access_token") for a in answers]
    return [token for token in found if isinstance(token, str)]


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
        timeout=client_settings.timeout_seconds,
    )
