"""The CalDAV connector's declaration: one capability, the account's calendars as its resources.

An app password opens the whole account, so the capability requires no scope (`Scopes.none()`): the gate lets it
run on any CalDAV connection and the page never asks to grant access. The app quota is per server host."""

from __future__ import annotations

from datetime import timedelta

from connectors.base import Capability, ConnectorSpec, RateLimits
from connectors.caldav.dav import host_of
from connectors.caldav.settings import CalDAVSettings
from connectors.caldav.stream import CalDAVEventsStream, calendars
from core.models import Sharing
from core.scopes import Scopes

EVENTS = Capability(
    name="calendar",
    display_name="Calendars",
    record_kind="calendar_event",
    required=Scopes.none(),
    requested_scopes=(),
    stream=CalDAVEventsStream,
    poll_interval=timedelta(minutes=15),
    resources=calendars,
    resource_noun="calendars",
)

# No published quotas; iCloud and Fastmail throttle with 429/503 and Retry-After, which pause the host's bucket.
SPEC = ConnectorSpec(
    slug="caldav",
    display_name="CalDAV calendar",
    auth_provider="caldav",
    capabilities=(EVENTS,),
    rate_limits=RateLimits(app_per_minute=600, connection_per_minute=120, app_key=host_of),
    needs_oauth_client=False,
    settings=CalDAVSettings,
    default_sharing=Sharing.OWNER,
)
