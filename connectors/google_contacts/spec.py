"""The Google Contacts connector's declaration."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from connectors.base import Capability, ConnectorSettings, ConnectorSpec, RateLimits
from connectors.google_api import method_scopes
from connectors.google_contacts.stream import MAX_PAGE_SIZE, GoogleContactsStream
from core.models import Sharing


class GoogleContactsSettings(ConnectorSettings):
    page_size: int = Field(default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Contacts per People API page.")


CONTACTS = Capability(
    name="contacts",
    display_name="Contacts",
    record_kind="contact",
    required=method_scopes("people", "v1", "people", "connections", "list"),
    requested_scopes=("https://www.googleapis.com/auth/contacts.readonly",),
    stream=GoogleContactsStream,
    poll_interval=timedelta(minutes=15),
)

# Google publishes no People API quota table; about 90 critical reads per minute per user is what third
# parties observe (UNVERIFIED, see shared/providers.md 2.4). The per-app figure is a project's default.
SPEC = ConnectorSpec(
    slug="google_contacts",
    display_name="Google Contacts",
    auth_provider="google",
    capabilities=(CONTACTS,),
    rate_limits=RateLimits(app_per_minute=600, connection_per_minute=90),
    settings=GoogleContactsSettings,
    default_sharing=Sharing.OWNER,
)
