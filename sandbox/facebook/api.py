"""Graph nodes and edges: /me, permissions, accounts, Pages' subscribed apps and lead forms, leads, and the app's
webhook subscriptions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from sandbox.facebook.data import FORM_KINDS, question_body
from sandbox.facebook.errors import GraphError, graph_error, invalid_parameter, missing_permission, unknown_object
from sandbox.facebook.graph import Call, CallDep
from sandbox.facebook.state import DAY, Form, Lead, Page, Subscription, User
from sandbox.facebook.webhooks import verify_callback

ISO = "%Y-%m-%dT%H:%M:%S+0000"
SUBSCRIBABLE = frozenset({"leadgen", "leadgen_fat", "leadgen_update", "feed", "messages", "mention", "ratings"})
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "EQUAL": lambda a, b: a == b,
    "NOT_EQUAL": lambda a, b: a != b,
    "GREATER_THAN": lambda a, b: a > b,
    "GREATER_THAN_OR_EQUAL": lambda a, b: a >= b,
    "LESS_THAN": lambda a, b: a < b,
    "LESS_THAN_OR_EQUAL": lambda a, b: a <= b,
}
LEAD_FIELDS = frozenset(
    {
        "id",
        "created_time",
        "field_data",
        "ad_id",
        "ad_name",
        "adset_id",
        "adset_name",
        "campaign_id",
        "campaign_name",
        "form_id",
        "is_organic",
        "platform",
        "partner_name",
        "custom_disclaimer_responses",
        "post",
        "retailer_item_id",
        "home_listing",
        "vehicle",
        "post_submission_check_result",
    }
)
FORM_FIELDS = frozenset(
    {
        "id",
        "name",
        "status",
        "locale",
        "created_time",
        "leads_count",
        "expired_leads_count",
        "organic_leads_count",
        "page",
        "page_id",
        "questions",
    }
)
MAX_IDS = 50
USER_FIELDS = frozenset({"id", "name", "email", "first_name", "last_name"})
PAGE_FIELDS = frozenset({"id", "name", "category", "link"})

router = APIRouter()


def iso(moment: float) -> str:
    return time.strftime(ISO, time.gmtime(moment))


def pick(values: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Graph leaves out fields that have no value."""
    return {name: values[name] for name in fields if values.get(name) is not None}


def lead_values(lead: Lead) -> dict[str, Any]:
    ad = {} if lead.is_organic else {"ad_name": f"Ad {lead.ad_id}", "adset_name": "Lead ads", "campaign_name": "Leads"}
    return {
        "id": lead.id,
        "created_time": iso(lead.created_time),
        "field_data": lead.field_data,
        "ad_id": lead.ad_id,
        "adset_id": lead.adset_id,
        "campaign_id": lead.campaign_id,
        "form_id": lead.form_id,
        "is_organic": lead.is_organic,
        "platform": lead.platform,
        "custom_disclaimer_responses": [],
        **ad,
    }


def form_values(call: Call, form: Form) -> dict[str, Any]:
    now = time.time()
    visible = call.facebook.visible_leads(form, now)
    leads = [call.facebook.leads[i] for i in form.leads]
    page = call.facebook.pages[form.page_id]
    return {
        "id": form.id,
        "name": form.name,
        "status": form.status,
        "locale": form.locale,
        "created_time": iso(form.created_time),
        "leads_count": len(leads),
        "expired_leads_count": len(leads) - len(visible),
        "organic_leads_count": sum(lead.is_organic for lead in leads),
        "page": {"id": page.id, "name": page.name},
        "page_id": page.id,
        "questions": [question_body(q, form.id, i) for i, q in enumerate(FORM_KINDS[form.kind])],
    }


def user_values(user: User) -> dict[str, Any]:
    first, _, last = user.name.partition(" ")
    return {"id": user.id, "name": user.name, "email": user.email, "first_name": first, "last_name": last}


def page_values(page: Page) -> dict[str, Any]:
    return {"id": page.id, "name": page.name, "category": page.category, "link": f"https://www.facebook.com/{page.id}"}


def require(call: Call, permission: str, code: int) -> None:
    if permission not in call.grant.granted:
        raise missing_permission(permission, code)


def page_access(call: Call, page_id: str, page_token: bool = False) -> Page:
    """The Page, if the token may act on it: a Page token of that Page, or a user token granted the Page."""
    token = call.token
    page = call.facebook.pages[page_id]
    if page_token and token.kind != "PAGE":
        raise graph_error(210, "(#210) A page access token is required to request this resource.")
    allowed = token.page_id == page_id if token.kind == "PAGE" else True
    if not allowed or page_id not in call.grant.pages:
        raise unknown_object(page_id)
    return page


def resolve_node(call: Call, node: str) -> tuple[str, Any]:
    facebook = call.facebook
    if node == "me":
        if call.caller.token is None:
            raise graph_error(2500, "An active access token must be used to query information about the current user.")
        token = call.token
        if token.page_id:
            return "page", facebook.pages[token.page_id]
        return "user", facebook.users[token.user_id or ""]
    for kind, table in (("user", facebook.users), ("page", facebook.pages), ("form", facebook.forms)):
        if node in table:
            return kind, table[node]
    if node in facebook.leads:
        return "lead", facebook.leads[node]
    if node in facebook.apps:
        return "app", facebook.apps[node]
    raise unknown_object(node)


def node_body(call: Call, node: str) -> dict[str, Any]:
    kind, obj = resolve_node(call, node)
    if kind == "user":
        if obj.id != call.token.user_id:
            raise unknown_object(node)
        return pick(user_values(obj), call.fields(("id", "name"), USER_FIELDS, "User"))
    if kind == "page":
        page_access(call, obj.id)
        return pick(page_values(obj), call.fields(("id", "name"), PAGE_FIELDS, "Page"))
    if kind == "form":
        page_access(call, obj.page_id)
        require(call, "leads_retrieval", 10)
        fields = call.fields(("id", "name", "status", "locale"), FORM_FIELDS, "LeadgenForm")
        return pick(form_values(call, obj), fields)
    if kind == "lead":
        page_access(call, obj.page_id)
        require(call, "leads_retrieval", 10)
        if obj.created_time < time.time() - call.facebook.settings.lead_retention_days * DAY:
            raise unknown_object(node)
        fields = call.fields(("created_time", "id", "field_data"), LEAD_FIELDS, "Lead")
        return pick(lead_values(obj), fields)
    raise unknown_object(node)


def unknown(error: GraphError) -> bool:
    """Whether a node's error is Graph's "does not exist, or cannot be loaded" (100/33)."""
    found = json.loads(bytes(error.response.body)).get("error", {})
    return bool(found.get("code") == 100 and found.get("error_subcode") == 33)


@router.get("/")
async def get_nodes(call: CallDep) -> Response:
    """Several nodes in one request (`?ids=a,b`), keyed by id; one id Graph cannot load fails the whole request,
    naming it (https://developers.facebook.com/docs/graph-api/overview#reading, "Multiple ID Read Requests")."""
    ids = list(dict.fromkeys(parse_list(call.params.get("ids", ""))))
    if not ids:
        raise graph_error(100, "(#100) Missing ids or node id", type_="GraphMethodException")
    if len(ids) > MAX_IDS:
        raise invalid_parameter(f"Too many IDs. Maximum: {MAX_IDS}. Provided: {len(ids)}.")
    found: dict[str, Any] = {}
    missing: list[str] = []
    for node in ids:
        try:
            found[node] = node_body(call, node)
        except GraphError as error:
            if not unknown(error):
                raise
            missing.append(node)
    if missing:
        raise invalid_parameter(f"Some of the aliases you requested do not exist: {','.join(missing)}")
    return call.respond(found)


@router.get("/{node}")
async def get_node(node: str, call: CallDep) -> Response:
    return call.respond(node_body(call, node))


@router.api_route("/{node}", methods=["POST", "DELETE"])
async def write_node(node: str, call: CallDep) -> Response:
    raise unknown_object(node, call.request.method.lower())


def permissions_body(call: Call) -> dict[str, Any]:
    grant = call.grant
    data = [{"permission": p, "status": "granted"} for p in sorted(grant.granted)]
    data += [{"permission": p, "status": "declined"} for p in sorted(grant.declined)]
    return {"data": data}


def accounts(call: Call, user: User) -> Response:
    if call.token.kind != "USER" or user.id != call.token.user_id:
        raise unknown_object(user.id)
    grant = call.grant
    granted = "pages_show_list" in grant.granted
    pages = [call.facebook.pages[p] for p in user.pages if granted and p in grant.pages]

    def render(page: Page) -> dict[str, Any]:
        return {
            "access_token": call.facebook.page_token(call.token, page.id).value,
            "category": page.category,
            "category_list": [{"id": "2500", "name": page.category}],
            "name": page.name,
            "id": page.id,
            "tasks": ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"],
        }

    return call.page(pages, lambda page: [user.pages.index(page.id)], render, f"{user.id}/accounts")


def subscribed_apps(call: Call, page: Page) -> Response:
    page_access(call, page.id, page_token=True)
    require(call, "pages_manage_metadata", 200)
    method = call.request.method
    if method == "GET":
        data = [
            {
                "category": "Business",
                "link": f"https://sandbox.test/apps/{app_id}",
                "name": call.facebook.apps[app_id].name,
                "id": app_id,
                "subscribed_fields": fields,
            }
            for app_id, fields in page.subscribed.items()
        ]
        return call.respond({"data": data})
    app_id = call.token.app_id
    if method == "DELETE":
        page.subscribed.pop(app_id, None)
        return call.respond({"success": True})
    fields = parse_list(call.params.get("subscribed_fields", ""))
    if not fields:
        raise invalid_parameter("The parameter subscribed_fields is required.")
    unknown = [f for f in fields if f not in SUBSCRIBABLE]
    if unknown:
        raise invalid_parameter(f"Param subscribed_fields[0] must be one of {{{', '.join(sorted(SUBSCRIBABLE))}}}")
    page.subscribed[app_id] = fields
    return call.respond({"success": True})


def parse_list(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError:
            raise invalid_parameter("Param must be an array") from None
        return [str(item) for item in items]
    return [item.strip() for item in value.split(",") if item.strip()]


def leadgen_forms(call: Call, page: Page) -> Response:
    page_access(call, page.id)
    require(call, "leads_retrieval", 10)
    forms = [call.facebook.forms[f] for f in page.forms]
    fields = call.fields(("id", "name", "status", "locale"), FORM_FIELDS, "LeadgenForm")
    return call.page(
        forms, lambda form: [page.forms.index(form.id)], lambda form: pick(form_values(call, form), fields), page.id
    )


def time_filters(raw: str | None) -> list[Callable[[float], bool]]:
    if not raw:
        return []
    try:
        rules = json.loads(raw)
    except ValueError:
        raise invalid_parameter("param filtering must be an array") from None
    if not isinstance(rules, list):
        raise invalid_parameter("param filtering must be an array")
    checks = []
    for rule in rules:
        if not isinstance(rule, dict) or rule.get("field") != "time_created":
            raise invalid_parameter("Filtering field is invalid: only time_created is supported on leads")
        operator = OPERATORS.get(str(rule.get("operator")))
        try:
            value = float(rule.get("value"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise invalid_parameter("Filtering value for time_created must be a unix timestamp") from None
        if operator is None:
            raise invalid_parameter(f"Filtering operator {rule.get('operator')} is invalid")
        checks.append(lambda moment, op=operator, v=value: op(moment, v))
    return checks


def form_leads(call: Call, form: Form) -> Response:
    page_access(call, form.page_id)
    require(call, "leads_retrieval", 10)
    checks = time_filters(call.params.get("filtering"))
    leads = [
        lead for lead in call.facebook.visible_leads(form, time.time()) if all(c(lead.created_time) for c in checks)
    ]
    fields = call.fields(("created_time", "id", "field_data"), LEAD_FIELDS, "Lead")
    return call.page(
        leads,
        lambda lead: [int(lead.created_time), int(lead.id)],
        lambda lead: pick(lead_values(lead), fields),
        f"{form.id}/leads",
        descending=True,
    )


async def subscriptions(call: Call, app_id: str) -> Response:
    if call.caller.token is not None or call.caller.app.app_id != app_id:
        raise graph_error(15, "(#15) This method must be called with an app access_token.")
    app = call.caller.app
    method = call.request.method
    if method == "GET":
        sub = app.subscription
        data = []
        if sub is not None:
            fields = [{"name": f, "version": "v25.0"} for f in sub.fields]
            data = [{"object": sub.object, "callback_url": sub.callback_url, "active": sub.active, "fields": fields}]
        return call.respond({"data": data})
    if method == "DELETE":
        app.subscription = None
        return call.respond({"success": True})
    params = call.params
    for name in ("object", "callback_url", "verify_token"):
        if not params.get(name):
            raise invalid_parameter(f"The parameter {name} is required")
    fields = parse_list(params.get("fields", ""))
    timeout = call.facebook.settings.webhook_timeout
    problem = await verify_callback(params["callback_url"], params["verify_token"], timeout)
    if problem is not None:
        raise graph_error(2200, f"(#2200) callback verification failed: {problem}")
    include = params.get("include_values", "true").lower() != "false"
    app.subscription = Subscription(params["object"], params["callback_url"], fields, params["verify_token"], include)
    return call.respond({"success": True})


@router.api_route("/me/permissions/{permission}", methods=["DELETE"])
async def revoke_permission(permission: str, call: CallDep) -> Response:
    grant = call.grant
    if permission in grant.granted:
        grant.granted.discard(permission)
        grant.declined.add(permission)
    return call.respond({"success": True})


@router.api_route("/{node}/{edge}", methods=["GET", "POST", "DELETE"])
async def edge(node: str, edge: str, call: CallDep) -> Response:
    kind, obj = resolve_node(call, node)
    method = call.request.method
    if kind == "user" and edge == "permissions" and method in ("GET", "DELETE"):
        if obj.id != call.token.user_id:
            raise unknown_object(node)
        if method == "GET":
            return call.respond(permissions_body(call))
        call.facebook.revoke_grant(obj.id, call.token.app_id)
        return call.respond({"success": True})
    if kind == "user" and edge == "accounts" and method == "GET":
        return accounts(call, obj)
    if kind == "page" and edge == "subscribed_apps":
        return subscribed_apps(call, obj)
    if kind == "page" and edge == "leadgen_forms" and method == "GET":
        return leadgen_forms(call, obj)
    if kind == "form" and edge == "leads" and method == "GET":
        return form_leads(call, obj)
    if kind == "app" and edge == "subscriptions":
        return await subscriptions(call, obj.app_id)
    raise unknown_object(node, method.lower())
