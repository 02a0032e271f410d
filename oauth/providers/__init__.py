"""Auth providers by name: OAuth configurations and the OAuth clients a deployment configured for them, and the
providers connected by a form (an app password). Neither depends on a connector being installed or enabled."""

from __future__ import annotations

from connectors.base import ConnectorSpec
from connectors.registry import enabled
from core.settings import ConfigError, Settings, section
from oauth.config import OAuthClientSettings, OAuthProviderConfig
from oauth.forms import FormProviderConfig
from oauth.providers.caldav import CALDAV
from oauth.providers.facebook import FACEBOOK
from oauth.providers.google import GOOGLE

PROVIDERS: dict[str, OAuthProviderConfig] = {config.name: config for config in (GOOGLE, FACEBOOK)}
FORM_PROVIDERS: dict[str, FormProviderConfig] = {config.name: config for config in (CALDAV,)}


def display_name(provider: str) -> str:
    """The auth provider's name as the page shows it ("Google", "CalDAV")."""
    found = PROVIDERS.get(provider) or FORM_PROVIDERS.get(provider)
    return found.display_name if found is not None else provider


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
