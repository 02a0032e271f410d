"""In-memory state of the fake Facebook: settings, apps, users, Pages, lead forms, leads, grants, codes and tokens."""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox.cursors import Cursors
from sandbox.facebook.data import FORM_KINDS, answers

TokenKind = Literal["USER", "PAGE", "APP"]
PAGE_SCOPED = frozenset(
    {
        "pages_show_list",
        "pages_manage_metadata",
        "pages_read_engagement",
        "pages_manage_ads",
        "pages_read_user_content",
        "leads_retrieval",
    }
)
KNOWN_PERMISSIONS = PAGE_SCOPED | {"public_profile", "email", "ads_management", "ads_read", "business_management"}
DEMO_USERS: tuple[tuple[str, str, tuple[tuple[str, tuple[tuple[str, str, int], ...]], ...]], ...] = (
    (
        "Dana Demo",
        "dana@sandbox.test",
        (
            ("Dana's Bakery", (("Contact us", "contact", 5), ("Book a tasting", "demo", 5))),
            ("Dana Demo Consulting", (("Request a call", "contact", 5), ("Book a demo", "demo", 5))),
        ),
    ),
    ("Sam Sample", "sam@sandbox.test", (("Sam's Garage", (("Get a quote", "contact", 3),)),)),
)
DAY = 86400.0


class FacebookSettings(BaseModel):
    short_token_lifetime: float = Field(default=7200, ge=0, description="Seconds a dialog code's token lasts.")
    long_token_lifetime: float = Field(default=5183944, ge=0, description="Seconds an fb_exchange_token token lasts.")
    data_access_lifetime: float = Field(default=90 * DAY, ge=0, description="Seconds of data access after a login.")
    auth_code_lifetime: float = Field(default=600, ge=0, description="Seconds a dialog code can be exchanged.")
    lead_retention_days: float = Field(default=90, ge=0, description="Leads older than this are no longer returned.")
    default_limit: int = Field(default=25, ge=1)
    max_limit: int = Field(default=500, ge=1, description="UNVERIFIED: a larger `limit` is clamped to this.")
    webhook_batch_window: float = Field(default=0.2, ge=0, description="Seconds changes gather into one POST.")
    webhook_max_batch: int = Field(default=1000, ge=1, description="Most changes in one POST (Meta: 1000).")
    webhook_retry_first_delay: float = Field(default=1.0, gt=0, description="Seconds before the first redelivery.")
    webhook_retry_window: float = Field(
        default=36 * 3600, ge=0, description="Seconds after the first attempt during which Meta redelivers."
    )
    webhook_timeout: float = Field(default=5.0, gt=0, description="Seconds a callback has to answer.")
    drop_webhooks: bool = Field(default=False, description="Never deliver: the webhook Meta loses.")
    webhook_ids_as_numbers: bool = Field(default=False, description="IDs as JSON numbers, as Meta's docs sample.")
    legacy_sha1_signature: bool = Field(default=False, description="UNVERIFIED: also send X-Hub-Signature (sha1).")
    app_usage: dict[str, int] | None = Field(default=None, description="X-App-Usage on every user or app call.")
    page_usage: dict[str, int] | None = Field(
        default=None, description="The Page's X-Business-Use-Case-Usage entry on every Page token call."
    )


@dataclass
class Subscription:
    object: str
    callback_url: str
    fields: list[str]
    verify_token: str
    include_values: bool = True
    active: bool = True


@dataclass
class App:
    app_id: str
    secret: str
    name: str
    redirect_uris: tuple[str, ...]
    require_proof: bool = True
    subscription: Subscription | None = None


@dataclass
class User:
    id: str
    name: str
    email: str
    pages: list[str] = field(default_factory=list)


@dataclass
class Page:
    id: str
    name: str
    category: str
    forms: list[str] = field(default_factory=list)
    subscribed: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Form:
    id: str
    page_id: str
    name: str
    kind: str
    created_time: float
    status: str = "ACTIVE"
    locale: str = "en_US"
    leads: list[str] = field(default_factory=list)


@dataclass
class Lead:
    id: str
    form_id: str
    page_id: str
    created_time: float
    field_data: list[dict[str, Any]]
    ad_id: str | None
    adgroup_id: str | None
    adset_id: str | None
    campaign_id: str | None
    is_organic: bool
    platform: str


@dataclass
class Grant:
    user_id: str
    app_id: str
    granted: set[str] = field(default_factory=set)
    declined: set[str] = field(default_factory=set)
    pages: set[str] = field(default_factory=set)
    data_access_expires_at: float = 0.0


@dataclass
class Code:
    app_id: str
    user_id: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class Token:
    value: str
    kind: TokenKind
    app_id: str
    user_id: str | None
    page_id: str | None
    issued_at: float
    expires_at: float  # 0: never
    long_lived: bool = False
    invalid_subcode: int | None = None  # 458, 460, 467...: why it no longer works

    def record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class Injection:
    """An error answered instead of the Graph call, to calls matching every filter that is set."""

    code: int
    error_subcode: int | None = None
    message: str | None = None
    type: str | None = None
    status: int = 400
    app_id: str | None = None
    page_id: str | None = None
    path_prefix: str | None = None
    method: str | None = None
    times: int | None = 1
    estimated_time_to_regain_access: int = 0
    is_transient: bool | None = None
    until: float | None = None  # Unix seconds after which the rule no longer applies


@dataclass
class Delivery:
    id: int
    app_id: str
    url: str
    body: str
    leadgen_ids: list[str]
    created: float
    state: Literal["pending", "retrying", "delivered", "failed", "dropped"] = "pending"
    attempts: list[dict[str, Any]] = field(default_factory=list)
    next_attempt_at: float | None = None

    def record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class FacebookState:
    seed: int
    settings: FacebookSettings = field(default_factory=FacebookSettings)
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    pages: dict[str, Page] = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)
    leads: dict[str, Lead] = field(default_factory=dict)
    grants: dict[tuple[str, str], Grant] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    page_tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    injections: list[Injection] = field(default_factory=list)
    deliveries: dict[int, Delivery] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    cursors: Cursors = field(default_factory=lambda: Cursors(secrets.token_bytes(32)))

    def __post_init__(self) -> None:
        from sandbox.facebook.webhooks import WebhookSender

        self.sender = WebhookSender(self)

    def __getstate__(self) -> dict[str, Any]:
        """What a state file keeps: everything but the webhook sender's timers and tasks."""
        return {name: value for name, value in vars(self).items() if name != "sender"}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        vars(self).update(saved)
        self.__post_init__()

    @classmethod
    def seeded(cls, seed: int) -> FacebookState:
        state = cls(seed, rng=random.Random(f"{seed}:facebook"))
        now = time.time()
        for name, email, pages in DEMO_USERS:
            user = state.add_user(name, email)
            for page_name, forms in pages:
                page = state.add_page(user, page_name)
                for form_name, kind, leads in forms:
                    form = state.add_form(page, form_name, kind, now - 60 * DAY)
                    for index in range(leads):
                        state.add_lead(form, created_time=now - (index + 1) * 1.7 * DAY - len(state.leads) * 60)
        return state

    def new_id(self, digits: int = 15) -> str:
        while True:
            value = str(self.rng.randrange(10 ** (digits - 1), 10**digits))
            if all(value not in table for table in (self.users, self.pages, self.forms, self.leads, self.apps)):
                return value

    def add_user(self, name: str, email: str) -> User:
        user = User(self.new_id(17), name, email)
        self.users[user.id] = user
        return user

    def add_page(self, user: User, name: str, category: str = "Local business") -> Page:
        page = Page(self.new_id(), name, category)
        self.pages[page.id] = page
        user.pages.append(page.id)
        return page

    def add_form(self, page: Page, name: str, kind: str = "contact", created_time: float | None = None) -> Form:
        form = Form(self.new_id(), page.id, name, kind, time.time() if created_time is None else created_time)
        self.forms[form.id] = form
        page.forms.append(form.id)
        return form

    def add_lead(
        self,
        form: Form,
        created_time: float | None = None,
        field_data: list[dict[str, Any]] | None = None,
        organic: bool | None = None,
        platform: str | None = None,
    ) -> Lead:
        index = len(form.leads)
        organic = index % 4 == 3 if organic is None else organic
        ad = None if organic else self.new_id()
        lead = Lead(
            id=self.new_id(),
            form_id=form.id,
            page_id=form.page_id,
            created_time=float(int(time.time() if created_time is None else created_time)),
            field_data=answers(FORM_KINDS[form.kind], index, self.rng) if field_data is None else field_data,
            ad_id=ad,
            adgroup_id=ad,
            adset_id=None if organic else self.new_id(),
            campaign_id=None if organic else self.new_id(),
            is_organic=organic,
            platform=platform or ("ig" if index % 5 == 2 else "fb"),
        )
        self.leads[lead.id] = lead
        form.leads.append(lead.id)
        return lead

    def grant(self, user_id: str, app_id: str) -> Grant:
        return self.grants.setdefault((user_id, app_id), Grant(user_id, app_id))

    def issue_code(self, code: Code) -> str:
        value = "AQ" + secrets.token_urlsafe(48)
        self.codes[value] = code
        return value

    def issue_token(
        self, kind: TokenKind, app_id: str, user_id: str | None, page_id: str | None, lifetime: float | None, long: bool
    ) -> Token:
        now = time.time()
        value = "EAA" + secrets.token_urlsafe(96 if long else 64)
        token = Token(value, kind, app_id, user_id, page_id, now, 0 if lifetime is None else now + lifetime, long)
        self.tokens[value] = token
        return token

    def page_token(self, user_token: Token, page_id: str) -> Token:
        """The Page token `/me/accounts` hands out: one per user token and Page; without expiry when the user
        token is long-lived, else dying with it."""
        key = (user_token.value, page_id)
        known = self.tokens.get(self.page_tokens.get(key, ""))
        if known is not None:
            return known
        lifetime = None if user_token.long_lived else max(0.0, user_token.expires_at - time.time())
        assert user_token.user_id is not None
        long = user_token.long_lived
        token = self.issue_token("PAGE", user_token.app_id, user_token.user_id, page_id, lifetime, long)
        self.page_tokens[key] = token.value
        return token

    def invalidate(self, user_id: str, app_id: str | None, subcode: int) -> int:
        """Every live token of the user (for one app, or all) stops working with this 190 subcode."""
        hit = [
            t
            for t in self.tokens.values()
            if t.user_id == user_id and app_id in (None, t.app_id) and t.invalid_subcode is None
        ]
        for token in hit:
            token.invalid_subcode = subcode
        return len(hit)

    def revoke_grant(self, user_id: str, app_id: str) -> int:
        """What `DELETE /me/permissions` and "remove app" do: the grant is forgotten, its tokens answer 458."""
        self.grants.pop((user_id, app_id), None)
        return self.invalidate(user_id, app_id, 458)

    def visible_leads(self, form: Form, now: float) -> list[Lead]:
        """The form's leads within the retention window, newest first (ties: larger id first)."""
        horizon = now - self.settings.lead_retention_days * DAY
        leads = [self.leads[i] for i in form.leads if self.leads[i].created_time >= horizon]
        return sorted(leads, key=lambda lead: (lead.created_time, int(lead.id)), reverse=True)
