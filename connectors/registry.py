"""The registry of connectors: one line per built-in connector, plus the `synchub.connectors` entry point group."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from connectors.base import Capability, ConnectorSpec
from connectors.google_contacts.spec import SPEC as GOOGLE_CONTACTS
from core.settings import ConfigError, Settings

BUILT_IN: tuple[ConnectorSpec, ...] = (GOOGLE_CONTACTS,)

ENTRY_POINT_GROUP = "synchub.connectors"


@lru_cache(maxsize=1)
def available() -> dict[str, ConnectorSpec]:
    """Built-in connectors plus those installed through the entry point group (read once per process)."""
    specs = {spec.slug: spec for spec in BUILT_IN}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        spec = entry.load()
        if not isinstance(spec, ConnectorSpec):
            raise ConfigError(f"entry point {entry.name} in {ENTRY_POINT_GROUP} is not a ConnectorSpec")
        specs.setdefault(spec.slug, spec)
    return specs


def enabled(settings: Settings) -> list[ConnectorSpec]:
    """The connectors SYNCHUB_CONNECTORS enables, each with its auth provider's client configured."""
    known = available()
    unknown = [slug for slug in settings.connectors if slug not in known]
    if unknown:
        choices = ", ".join(sorted(known)) or "none are installed yet"
        raise ConfigError(f"SYNCHUB_CONNECTORS names unknown connectors {', '.join(unknown)} (known: {choices})")
    specs = [known[slug] for slug in settings.connectors]
    missing = sorted(
        {
            spec.auth_provider
            for spec in specs
            if spec.needs_oauth_client and getattr(settings, spec.auth_provider) is None
        }
    )
    if missing:
        raise ConfigError(
            "\n".join(f"SYNCHUB_{provider.upper()}__CLIENT_ID and __CLIENT_SECRET are not set" for provider in missing)
        )
    return specs


def capabilities_of(settings: Settings, auth_provider: str) -> dict[str, tuple[ConnectorSpec, Capability]]:
    """The enabled capabilities riding on one auth provider, by capability name."""
    return {
        capability.name: (spec, capability)
        for spec in enabled(settings)
        if spec.auth_provider == auth_provider
        for capability in spec.capabilities
    }
