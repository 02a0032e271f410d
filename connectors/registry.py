"""The registry of connectors: one line per built-in connector, plus the `synchub.connectors` entry point group."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import entry_points

from connectors.base import Capability, ConnectorSettings, ConnectorSpec
from connectors.caldav.spec import SPEC as CALDAV
from connectors.facebook_leads.spec import SPEC as FACEBOOK_LEADS
from connectors.google_calendar.spec import SPEC as GOOGLE_CALENDAR
from connectors.google_contacts.spec import SPEC as GOOGLE_CONTACTS
from core.models import Sharing
from core.settings import ConfigError, Settings, section

BUILT_IN: tuple[ConnectorSpec, ...] = (GOOGLE_CONTACTS, FACEBOOK_LEADS, GOOGLE_CALENDAR, CALDAV)

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
    """The connectors SYNCHUB_CONNECTORS enables, each with its own settings valid (the auth providers' clients
    are `oauth.providers.configured`'s to check)."""
    known = available()
    unknown = [slug for slug in settings.connectors if slug not in known]
    if unknown:
        choices = ", ".join(sorted(known)) or "none are installed yet"
        raise ConfigError(f"SYNCHUB_CONNECTORS names unknown connectors {', '.join(unknown)} (known: {choices})")
    specs = [known[slug] for slug in settings.connectors]
    problems: list[str] = []
    for spec in specs:
        try:
            settings_of(settings, spec)
        except ConfigError as exc:
            problems.extend(str(exc).splitlines())
    if problems:
        raise ConfigError("\n".join(problems))
    return specs


def settings_of(settings: Settings, spec: ConnectorSpec) -> ConnectorSettings:
    """The connector's own settings, read from `SYNCHUB_<SLUG>__*` (validated once per settings object)."""
    found = section(settings, spec.slug, spec.settings)
    assert found is not None
    return found


def capabilities_of(settings: Settings, auth_provider: str) -> dict[str, tuple[ConnectorSpec, Capability]]:
    """The enabled capabilities riding on one auth provider, by capability name."""
    return {
        capability.name: (spec, capability)
        for spec in enabled(settings)
        if spec.auth_provider == auth_provider
        for capability in spec.capabilities
    }


def default_sharing(settings: Settings, auth_provider: str, capabilities: Iterable[str]) -> Sharing:
    """Who reads a new connection's records: its workspace only when every connector it is made for shares by
    default (one connection may carry several connectors' capabilities; the stricter choice wins)."""
    offered = capabilities_of(settings, auth_provider)
    specs = [offered[name][0] for name in capabilities if name in offered]
    shared = bool(specs) and all(spec.default_sharing == Sharing.WORKSPACE for spec in specs)
    return Sharing.WORKSPACE if shared else Sharing.OWNER
