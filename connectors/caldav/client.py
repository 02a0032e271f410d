"""The one way the connector reaches a CalDAV server: a caldav library client for a URL the user gave.

Every request the connector makes goes through `dav_client`, so the SSRF guard (https only, public addresses,
each redirect checked again, unless the deployment allows private hosts) lives here and nowhere else."""

from __future__ import annotations

from caldav.davclient import DAVClient

from connectors.caldav.settings import CalDAVSettings


def dav_client(url: str, username: str, password: str, settings: CalDAVSettings) -> DAVClient:
    """A client signed in as `username` at `url` (a server root, a principal or a calendar URL)."""
    return DAVClient(
        url=url,
        username=username,
        password=password,
        timeout=int(settings.timeout_seconds),
        enable_rfc6764=False,  # no DNS SRV/TXT lookups: the URL the user typed is the only address tried
        require_tls=not settings.allow_private_hosts,
    )
