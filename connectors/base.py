"""The connector interfaces: a connector declares a spec; the hub discovers it through the registry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectorSpec:
    """What a connector is: its slug (folder, URL segment, settings prefix), name and auth provider."""

    slug: str
    display_name: str
    auth_provider: str
    needs_oauth_client: bool = True
