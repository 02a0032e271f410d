"""Admin API for the fake Facebook under /_sandbox/facebook/: apps, users, Pages, forms, leads (which fire
webhooks), grants and tokens, injected Graph errors, settings, webhook deliveries, and the Lead Ads testing page."""

from __future__ import annotations

import time
from dataclasses import asdict
from html import escape
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sandbox.facebook.graph import FacebookDep
from sandbox.facebook.login import token_body
from sandbox.facebook.state import (
    KNOWN_PERMISSIONS,
    App,
    FacebookSettings,
    FacebookState,
    Form,
    Injection,
    Lead,
    Subscription,
    User,
)

router = APIRouter(prefix="/_sandbox/facebook")
TESTING_PATH = "/_sandbox/facebook/lead-ads-testing"


class AppIn(BaseModel):
    app_id: str = Field(min_length=1, description="Meta's are digits; `synchub dev` names its app synchub-dev.")
    app_secret: str = Field(min_length=1)
    name: str = "Sandbox App"
    redirect_uris: list[str] = Field(default_factory=list)
    require_appsecret_proof: bool = True


class SubscriptionIn(BaseModel):
    object: str = "page"
    callback_url: str
    fields: list[str] = Field(default_factory=lambda: ["leadgen"])
    verify_token: str = ""


class UserIn(BaseModel):
    name: str = Field(min_length=1)
    email: str = ""


class NamedIn(BaseModel):
    name: str = Field(min_length=1)
    kind: Literal["contact", "demo"] = "contact"


class LeadIn(BaseModel):
    count: int = Field(default=1, ge=1, le=10_000)
    field_data: list[dict[str, Any]] | None = None
    created_time: float | None = Field(default=None, description="Unix seconds; default now.")
    is_organic: bool | None = None
    platform: Literal["fb", "ig"] | None = None
    webhook: bool = Field(default=True, description="Send the leadgen change to subscribed apps.")
    flush: bool = Field(default=False, description="Send the batch now instead of after the batch window.")


class MintIn(BaseModel):
    user_id: str
    app_id: str
    permissions: list[str] = Field(min_length=1)
    declined: list[str] = Field(default_factory=list)
    pages: list[str] | None = Field(default=None, description="Granted Pages; default all of the user's.")
    long_lived: bool = True


class InvalidateIn(BaseModel):
    user_id: str
    app_id: str | None = None
    subcode: int = Field(default=460, description="458 app removed, 460 password changed, 467 logged out...")


class ExpiryIn(BaseModel):
    token: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    expires_at: float | None = Field(default=None, description="Unix seconds for the token(s); 0 never expires.")
    data_access_expires_at: float | None = Field(default=None, description="Unix seconds for the grant(s).")


class InjectionIn(BaseModel):
    code: int
    error_subcode: int | None = None
    message: str | None = None
    type: str | None = None
    status: int = Field(default=400, ge=400, le=599)
    app_id: str | None = None
    page_id: str | None = None
    path_prefix: str | None = Field(default=None, description="A Graph path without its version, e.g. /123/leads.")
    method: str | None = None
    times: int | None = Field(default=1, ge=0, description="The next N matching calls; None: until cleared.")
    estimated_time_to_regain_access: int = Field(default=0, ge=0, description="Minutes, in the usage header.")
    is_transient: bool | None = None
    seconds: float | None = Field(default=None, gt=0, description="Applies for this long from now; None: no limit.")


def known(table: dict[str, Any], key: str, what: str) -> Any:
    if key not in table:
        raise HTTPException(404, f"no {what} {key}")
    return table[key]


def user_summary(facebook: FacebookState, user: User) -> dict[str, Any]:
    pages = []
    for page_id in user.pages:
        page = facebook.pages[page_id]
        forms = [{"id": f, "name": facebook.forms[f].name, "leads": len(facebook.forms[f].leads)} for f in page.forms]
        pages.append({"id": page.id, "name": page.name, "forms": forms, "subscribed_apps": page.subscribed})
    return {"id": user.id, "name": user.name, "email": user.email, "pages": pages}


def app_summary(app: App) -> dict[str, Any]:
    subscription = asdict(app.subscription) if app.subscription else None
    uris = list(app.redirect_uris)
    return {"app_id": app.app_id, "name": app.name, "redirect_uris": uris, "subscription": subscription}


@router.post("/apps", status_code=201)
async def register_app(body: AppIn, facebook: FacebookDep) -> dict[str, Any]:
    old = facebook.apps.get(body.app_id)
    app = App(body.app_id, body.app_secret, body.name, tuple(body.redirect_uris), body.require_appsecret_proof)
    app.subscription = old.subscription if old else None
    facebook.apps[app.app_id] = app
    return app_summary(app)


@router.get("/apps")
async def list_apps(facebook: FacebookDep) -> list[dict[str, Any]]:
    return [app_summary(app) for app in facebook.apps.values()]


@router.put("/apps/{app_id}/subscription")
async def set_subscription(app_id: str, body: SubscriptionIn, facebook: FacebookDep) -> dict[str, Any]:
    """The App Dashboard's webhook setting, saved without the handshake."""
    app: App = known(facebook.apps, app_id, "app")
    app.subscription = Subscription(body.object, body.callback_url, body.fields, body.verify_token)
    return app_summary(app)


@router.post("/users", status_code=201)
async def add_user(body: UserIn, facebook: FacebookDep) -> dict[str, Any]:
    user = facebook.add_user(body.name, body.email or f"user{len(facebook.users)}@sandbox.test")
    return user_summary(facebook, user)


@router.get("/users")
async def list_users(facebook: FacebookDep) -> list[dict[str, Any]]:
    return [user_summary(facebook, user) for user in facebook.users.values()]


@router.post("/users/{user_id}/pages", status_code=201)
async def add_page(user_id: str, body: NamedIn, facebook: FacebookDep) -> dict[str, Any]:
    page = facebook.add_page(known(facebook.users, user_id, "user"), body.name)
    return {"id": page.id, "name": page.name}


@router.post("/pages/{page_id}/forms", status_code=201)
async def add_form(page_id: str, body: NamedIn, facebook: FacebookDep) -> dict[str, Any]:
    form = facebook.add_form(known(facebook.pages, page_id, "page"), body.name, body.kind)
    return {"id": form.id, "name": form.name, "page_id": page_id}


def create_leads(facebook: FacebookState, form: Form, body: LeadIn) -> dict[str, Any]:
    leads: list[Lead] = []
    apps: set[str] = set()
    for _ in range(body.count):
        lead = facebook.add_lead(form, body.created_time, body.field_data, body.is_organic, body.platform)
        leads.append(lead)
        if body.webhook:
            apps.update(facebook.sender.lead_created(lead))
    deliveries = [d.id for d in facebook.sender.flush_all()] if body.flush else []
    return {"leads": [lead.id for lead in leads], "webhook_apps": sorted(apps), "deliveries": deliveries}


@router.post("/forms/{form_id}/leads", status_code=201)
async def add_leads(form_id: str, body: LeadIn, facebook: FacebookDep) -> dict[str, Any]:
    return create_leads(facebook, known(facebook.forms, form_id, "form"), body)


@router.get("/leads/{lead_id}")
async def get_lead(lead_id: str, facebook: FacebookDep) -> dict[str, Any]:
    return asdict(known(facebook.leads, lead_id, "lead"))


@router.post("/tokens", status_code=201)
async def mint_token(body: MintIn, facebook: FacebookDep) -> dict[str, Any]:
    """A user token (and a Page token per granted Page) as if the user had logged in, without the dialog."""
    user: User = known(facebook.users, body.user_id, "user")
    known(facebook.apps, body.app_id, "app")
    unknown = set(body.permissions) - KNOWN_PERMISSIONS
    if unknown:
        raise HTTPException(400, f"unknown permissions: {', '.join(sorted(unknown))}")
    grant = facebook.grant(user.id, body.app_id)
    grant.granted |= {*body.permissions, "public_profile"}
    grant.declined = (grant.declined | set(body.declined)) - grant.granted
    grant.pages = set(user.pages if body.pages is None else body.pages) & set(user.pages)
    grant.data_access_expires_at = time.time() + facebook.settings.data_access_lifetime
    settings = facebook.settings
    lifetime = settings.long_token_lifetime if body.long_lived else settings.short_token_lifetime
    token = facebook.issue_token("USER", body.app_id, user.id, None, lifetime, body.long_lived)
    pages = {page_id: facebook.page_token(token, page_id).value for page_id in sorted(grant.pages)}
    return {**token_body(token), "page_tokens": pages}


@router.get("/tokens")
async def list_tokens(facebook: FacebookDep, user_id: str | None = None, app_id: str | None = None) -> list[Any]:
    return [t.record() for t in facebook.tokens.values() if user_id in (None, t.user_id) and app_id in (None, t.app_id)]


@router.post("/tokens/invalidate")
async def invalidate_tokens(body: InvalidateIn, facebook: FacebookDep) -> dict[str, int]:
    known(facebook.users, body.user_id, "user")
    return {"invalidated": facebook.invalidate(body.user_id, body.app_id, body.subcode)}


@router.post("/tokens/expiry")
async def set_expiry(body: ExpiryIn, facebook: FacebookDep) -> dict[str, int]:
    tokens = [
        t
        for t in facebook.tokens.values()
        if body.token in (None, t.value) and body.user_id in (None, t.user_id) and body.app_id in (None, t.app_id)
    ]
    if body.expires_at is not None:
        for token in tokens:
            token.expires_at = body.expires_at
    grants = {(t.user_id or "", t.app_id) for t in tokens}
    if body.data_access_expires_at is not None:
        for key in grants:
            if key in facebook.grants:
                facebook.grants[key].data_access_expires_at = body.data_access_expires_at
    return {"tokens": len(tokens), "grants": len(grants)}


@router.get("/grants")
async def list_grants(facebook: FacebookDep) -> list[dict[str, Any]]:
    return [
        {**asdict(g), "granted": sorted(g.granted), "declined": sorted(g.declined), "pages": sorted(g.pages)}
        for g in facebook.grants.values()
    ]


@router.get("/errors")
async def list_errors(facebook: FacebookDep) -> list[dict[str, Any]]:
    return [asdict(rule) for rule in facebook.injections]


@router.post("/errors", status_code=201)
async def inject_error(body: InjectionIn, facebook: FacebookDep) -> dict[str, Any]:
    """Answer the matching Graph calls (the next `times` of them) with this Graph error."""
    fields = body.model_dump(exclude={"seconds"})
    rule = Injection(**fields, until=None if body.seconds is None else time.time() + body.seconds)
    facebook.injections.append(rule)
    return asdict(rule)


@router.delete("/errors", status_code=204)
async def clear_errors(facebook: FacebookDep) -> None:
    facebook.injections.clear()


@router.get("/settings")
async def get_settings(facebook: FacebookDep) -> FacebookSettings:
    return facebook.settings


@router.patch("/settings")
async def update_settings(changes: dict[str, Any], facebook: FacebookDep) -> FacebookSettings:
    unknown = set(changes) - set(FacebookSettings.model_fields)
    if unknown:
        raise HTTPException(400, f"unknown settings: {', '.join(sorted(unknown))}")
    try:
        facebook.settings = FacebookSettings.model_validate({**facebook.settings.model_dump(), **changes})
    except ValidationError as error:
        raise HTTPException(422, error.errors(include_url=False)) from None
    return facebook.settings


@router.get("/webhooks/deliveries")
async def list_deliveries(facebook: FacebookDep, state: str | None = None, after: int = 0) -> list[dict[str, Any]]:
    return [d.record() for d in facebook.deliveries.values() if d.id > after and state in (None, d.state)]


@router.post("/webhooks/deliveries/{delivery_id}/resend", status_code=201)
async def resend_delivery(delivery_id: int, facebook: FacebookDep) -> dict[str, Any]:
    if delivery_id not in facebook.deliveries:
        raise HTTPException(404, f"no delivery {delivery_id}")
    return facebook.sender.resend(facebook.deliveries[delivery_id]).record()


@router.post("/webhooks/flush")
async def flush_webhooks(facebook: FacebookDep) -> list[dict[str, Any]]:
    """Send every batch still gathering now."""
    return [d.record() for d in facebook.sender.flush_all()]


def testing_page(facebook: FacebookState, message: str) -> HTMLResponse:
    options = "".join(
        f'<option value="{escape(form.id)}">{escape(facebook.pages[form.page_id].name)}: {escape(form.name)}</option>'
        for form in facebook.forms.values()
    )
    rows = "".join(
        f"<tr><td>{d.id}</td><td>{escape(d.state)}</td><td>{len(d.leadgen_ids)}</td><td>{len(d.attempts)}</td>"
        f"<td>{escape(d.url)}</td></tr>"
        for d in sorted(facebook.deliveries.values(), key=lambda d: -d.id)[:20]
    )
    note = f'<p role="status">{escape(message)}</p>' if message else ""
    body = (
        "<h1>Lead Ads Testing Tool</h1>\n"
        f"{note}\n"
        f'<form method="post" action="{TESTING_PATH}">\n'
        f'<label for="form_id">Form</label> <select id="form_id" name="form_id">{options}</select>\n'
        '<button type="submit">Submit a test lead</button>\n</form>\n'
        "<h2>Webhook deliveries</h2>\n<table><thead><tr><th>#</th><th>State</th><th>Leads</th><th>Attempts</th>"
        f"<th>Callback URL</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    head = '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Lead Ads Testing</title></head>'
    return HTMLResponse(f"{head}\n<body>\n{body}\n</body></html>\n")


@router.get("/lead-ads-testing")
async def lead_ads_testing(facebook: FacebookDep, created: str = "") -> HTMLResponse:
    message = ""
    if created:
        message = f"Lead {created} submitted." if created in facebook.leads else ""
    return testing_page(facebook, message)


@router.post("/lead-ads-testing")
async def submit_test_lead(request: Request, facebook: FacebookDep) -> Response:
    form_id = str((await request.form()).get("form_id", ""))
    form: Form = known(facebook.forms, form_id, "form")
    created = create_leads(facebook, form, LeadIn())
    return RedirectResponse(f"{TESTING_PATH}?created={created['leads'][0]}", status_code=303)
