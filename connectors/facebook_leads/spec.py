"""The Facebook Lead Ads connector's declaration."""

from __future__ import annotations

from datetime import timedelta

import phonenumbers
from pydantic import Field, field_validator

from connectors.base import Capability, ConnectorSpec, RateLimits, WebhookConnectorSettings
from connectors.facebook_leads.stream import FacebookLeadsStream, PageSubscription, list_forms, list_pages
from connectors.facebook_leads.subscribe import COMMANDS
from connectors.facebook_leads.webhook import WEBHOOK
from core.models import Sharing
from core.scopes import Scopes

REQUIRED = ("leads_retrieval", "pages_show_list", "pages_manage_metadata", "pages_read_engagement")


class FacebookLeadsSettings(WebhookConnectorSettings):
    page_size: int = Field(default=100, ge=1, le=500, description="Leads per Graph page.")
    overlap_seconds: int = Field(
        default=600, ge=0, le=86400, description="A poll reads each form from its newest lead seen less this."
    )
    backfill_days: int = Field(default=90, ge=1, le=90, description="How far back choosing a Page reads its leads.")
    phone_region: str | None = Field(
        default=None, description="ISO 3166 region for phones given without a country code; unset: never guessed."
    )

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("must be a two-letter region code phonenumbers knows, such as US or DE")
        return value.upper()


# Webhook setup needs leads_retrieval, pages_manage_metadata, pages_show_list and pages_read_engagement
# (providers.md 4.4); ads_management adds the ad-level fields, and is asked for without being required.
LEADS = Capability(
    name="leads",
    display_name="Lead Ads",
    record_kind="lead",
    required=Scopes.all_of(*REQUIRED),
    requested_scopes=(*REQUIRED, "ads_management"),
    stream=FacebookLeadsStream,
    poll_interval=timedelta(minutes=15),
    resources=list_pages,
    resource_noun="Pages",
    lifecycle=PageSubscription(),
    shared_at_provider=True,  # one app subscription per Page, whoever chose it
    parts=list_forms,
    part_noun="forms",
)

# LeadGen's Business Use Case limit is 4,800 calls a day per lead generated over 90 days, per Page (providers.md
# 4.9): a Page with a handful of leads gets a few a minute. Platform limits (200 an hour per user) bound the rest.
SPEC = ConnectorSpec(
    slug="facebook_leads",
    display_name="Facebook Lead Ads",
    auth_provider="facebook",
    capabilities=(LEADS,),
    rate_limits=RateLimits(app_per_minute=600, connection_per_minute=200, resource_per_minute=60),
    settings=FacebookLeadsSettings,
    default_sharing=Sharing.WORKSPACE,
    webhook=WEBHOOK,
    commands=COMMANDS,
)
