"""The Google Calendar connector's declaration.

Scopes are declared, not derived from the discovery document (which also accepts free/busy-only scopes that
cannot read events): one group for the calendar list, one for events.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr

from connectors.base import Capability, ConnectorSpec, RateLimits, WebhookConnectorSettings
from connectors.google_calendar.push import CalendarChannels, CalendarNotifications
from connectors.google_calendar.stream import MAX_PAGE_SIZE, GoogleCalendarStream, calendars
from core.models import Sharing
from core.scopes import Scopes

AUTH = "https://www.googleapis.com/auth/"
CALENDAR_LIST_SCOPES = Scopes.any_of(
    {
        AUTH + "calendar.calendarlist.readonly",
        AUTH + "calendar.calendarlist",
        AUTH + "calendar.readonly",
        AUTH + "calendar",
    }
)
EVENTS_SCOPES = Scopes.any_of(
    {
        AUTH + "calendar.events.readonly",
        AUTH + "calendar.events",
        AUTH + "calendar.readonly",
        AUTH + "calendar",
    }
)
REQUESTED = (AUTH + "calendar.calendarlist.readonly", AUTH + "calendar.events.readonly")


class GoogleCalendarSettings(WebhookConnectorSettings):
    verify_token: SecretStr = Field(
        default=SecretStr("google-calendar-has-no-handshake"),
        min_length=16,
        description="Unused: Google Calendar's channels have no subscription handshake.",
    )
    page_size: int = Field(default=250, ge=1, le=MAX_PAGE_SIZE, description="Events per events.list page.")
    window_days_back: int = Field(default=365, ge=1, description="A full pass reads events from this many days ago.")
    window_days_ahead: int = Field(
        default=365, ge=1, description="A full pass reads events up to this many days ahead."
    )
    channel_ttl_seconds: int = Field(
        default=604800, ge=60, description="The lifetime asked for each push channel (Google's default is 7 days)."
    )
    channel_renew_before_seconds: int = Field(
        default=86400, ge=0, description="A channel is renewed this long before it expires."
    )
    push_allow_http: bool = Field(
        default=False, description="Open channels to an http public URL (the sandbox, in dev); else https only."
    )


EVENTS = Capability(
    name="calendar",
    display_name="Calendars",
    record_kind="calendar_event",
    required=CALENDAR_LIST_SCOPES & EVENTS_SCOPES,
    requested_scopes=REQUESTED,
    stream=GoogleCalendarStream,
    poll_interval=timedelta(minutes=15),
    resources=calendars,
    lifecycle=CalendarChannels(),
)

# 600 requests per minute per user, 10,000 per project (shared/providers.md 3.8).
SPEC = ConnectorSpec(
    slug="google_calendar",
    display_name="Google Calendar",
    auth_provider="google",
    capabilities=(EVENTS,),
    rate_limits=RateLimits(app_per_minute=10000, connection_per_minute=600),
    settings=GoogleCalendarSettings,
    default_sharing=Sharing.OWNER,
    webhook=CalendarNotifications(),
)
