"""The CalDAV connector's deployment settings (`SYNCHUB_CALDAV__*`)."""

from __future__ import annotations

from pydantic import Field

from connectors.base import ConnectorSettings


class CalDAVSettings(ConnectorSettings):
    allow_private_hosts: bool = Field(
        default=False,
        description="Allow plain http and servers on private, loopback or link-local addresses (tests, the dev "
        "hub's Radicale). Off in production: the server URL comes from the user.",
    )
    timeout_seconds: float = Field(
        default=20.0, gt=0, le=120, description="How long one request to a CalDAV server may take, connect included."
    )
    ca_bundle: str | None = Field(
        default=None,
        description="A CA bundle (PEM file) to trust instead of the system's, for CalDAV servers whose certificates "
        "a private CA signs.",
    )
    dev_note: str | None = Field(
        default=None,
        description="A line the connect form shows: `synchub dev` sets it to its Radicale's URL, demo user and "
        "password. Leave it unset in production.",
    )
    use_sync_collection: bool = Field(
        default=True,
        description="Sync by sync-collection (RFC 6578) where the server supports it; off, every calendar is synced "
        "by its ctag and its events' etags.",
    )
    page_size: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="Events fetched by one calendar-multiget REPORT, and committed as one page.",
    )
