"""Provider OAuth configurations by auth provider name, and the OAuth clients a deployment configured for them."""

from __future__ import annotations

from connectors.base import ConnectorSpec
from connectors.registry import enabled
from core.settings import ConfigError, Settings, section
from oauth.config import OAuthClientSettings, OAuthProviderConfig
from oauth.providers.facebook import FACEBOOK
from oauth.providers.google import GOOGLE

PROVIDERS: dict[str, OAuthProviderConfig] = {config.name: config for config in (GOOGLE, FACEBOOK)}


def client_settings(settings: Settings, provider: str) -> OAuthClientSettings | None:
    """The provider's OAuth client from `SYNCHUB_<PROVIDER>__*`, None if none is configured."""
    return section(settings, provider, PROVIDERS[provider].client_settings, optional=True)


def configured(settings: Settings) -> list[ConnectorSpec]:
    """The enabled connectors, each with its own settings valid and its auth provider's OAuth client configured;
    ConfigError names every variable to fix, one line each."""
    specs = enabled(settings)
    needed = sorted({spec.auth_provider for spec in specs if spec.needs_oauth_client})
    problems = [
        f"SYNCHUB_{provider.upper()}__ names an auth provider this hub does not know"
        for provider in needed
        if provider not in PROVIDERS
    ]
    for provider in (p for p in needed if p in PROVIDERS):
        try:
            found = client_settings(settings, provider)
        except ConfigError as exc:
            problems.extend(str(exc).splitlines())
            continue
        if found is None:
            problems.append(f"SYNCHUB_{provider.upper()}__CLIENT_ID and __CLIENT_SECRET are not set")
    if problems:
        raise ConfigError("\n".join(problems))
    return specs
