"""A Page's leads: every form's leads of the last 90 days when the Page is chosen, then each poll re-lists the
forms and reads each one's leads from the newest seen less an overlap, one Graph page at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from connectors.base import ConnectorSettings, Cursor, Page, Resource, StreamContext
from connectors.facebook_leads.errors import InvalidParameter
from connectors.facebook_leads.graph import Graph, every, next_cursor
from connectors.facebook_leads.leads import LEAD_FIELDS, created, questions_of, to_lead
from core.errors import AuthRevoked, ConnectorError, CursorExpired, PayloadRejected, SecretMissing
from crm.records import Lead

DAY_SECONDS = 86400
FORM_FIELDS = "id,name,status,questions"


def setting(settings: ConnectorSettings, name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def user_graph(ctx: StreamContext) -> Graph:
    return Graph(ctx, ctx.credentials.access_token())


def secret_name(page_id: str) -> str:
    return f"page:{page_id}"


def list_pages(ctx: StreamContext) -> list[Resource]:
    """The Pages the user granted the app (`/me/accounts`), without their tokens."""
    found = user_graph(ctx).pages(("me", "accounts"), {"fields": "id,name,category,tasks"})
    return [
        Resource(str(page["id"]), str(page.get("name") or page["id"]), {"category": page.get("category")})
        for page in found
        if page.get("id")
    ]


def list_forms(ctx: StreamContext) -> list[Resource]:
    """The chosen Page's lead forms (`/{page}/leadgen_forms`), which the user may narrow the Page to."""
    page = the_page(ctx)
    found = PageGraph(ctx, page).pages((page.external_id, "leadgen_forms"), {"fields": "id,name,status"})
    return [
        Resource(str(form["id"]), str(form.get("name") or form["id"]), {"status": form.get("status")})
        for form in found
        if form.get("id")
    ]


def chosen_form(page: Resource, form: str | None) -> bool:
    """Whether the user takes this form's leads: every form unless they chose some (providers.md 4.7)."""
    return page.parts is None or (form is not None and form in page.parts)


def page_token(ctx: StreamContext, page: Resource, renew: bool = False) -> str:
    """The Page's token from the vault; fetched from `/me/accounts` and sealed when the vault holds none."""
    if not renew:
        try:
            return ctx.credentials.secret(secret_name(page.external_id))
        except SecretMissing:
            pass
    found = user_graph(ctx).pages(("me", "accounts"), {"fields": "id,access_token"})
    token = next((p.get("access_token") for p in found if str(p.get("id")) == page.external_id), None)
    if not isinstance(token, str) or not token:
        raise ConnectorError(f"Facebook does not list the Page {page.display_name} for this account any more")
    ctx.credentials.keep(secret_name(page.external_id), token)
    return token


class PageGraph:
    """Graph as the Page's token sees it. A Page token Facebook refuses (190: it was derived from a user token
    that has since been replaced, say after a reconnect) is derived again once from the user's token; if that one
    is refused too, the connection needs reconnecting."""

    def __init__(self, ctx: StreamContext, page: Resource) -> None:
        self.ctx, self.page = ctx, page
        self.graph = Graph(ctx, page_token(ctx, page))
        self.renewed = False

    def call(self, method: str, path: tuple[str, ...], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            return self.graph.call(method, path, params)
        except AuthRevoked:
            if self.renewed:
                raise
            self.renewed = False
            self.graph = Graph(self.ctx, page_token(self.ctx, self.page, renew=True))
            return self.graph.call(method, path, params)

    def pages(self, path: tuple[str, ...], params: Mapping[str, Any]) -> list[dict[str, Any]]:
        return every(self.call, path, params)


def the_page(ctx: StreamContext) -> Resource:
    if ctx.resource is None:
        raise ConnectorError("lead capture reads one Page at a time; choose a Page")
    return ctx.resource


class PageSubscription:
    """Choosing a Page seals its token and subscribes the app to its `leadgen` field; deselecting unsubscribes."""

    def selected(self, ctx: StreamContext) -> None:
        page = the_page(ctx)
        token = page_token(ctx, page, renew=True)
        answer = Graph(ctx, token).call("POST", (page.external_id, "subscribed_apps"), {"subscribed_fields": "leadgen"})
        if answer.get("success") not in (True, "true"):
            raise PayloadRejected("Facebook did not confirm the Page's subscription")

    def deselected(self, ctx: StreamContext) -> None:
        page = the_page(ctx)
        PageGraph(ctx, page).call("DELETE", (page.external_id, "subscribed_apps"))


class FacebookLeadsStream:
    """The cursor: per form, the newest lead time seen and the ids seen within the overlap before it (so a poll
    skips what it already wrote); while a pass runs, its forms, the one being read, its `since` and `after`."""

    def __init__(self, context: StreamContext) -> None:
        self.context = context
        settings = context.settings
        self.page_size = int(setting(settings, "page_size", 100))
        self.overlap = int(setting(settings, "overlap_seconds", 600))
        self.backfill = int(setting(settings, "backfill_days", 90)) * DAY_SECONDS
        self.region = setting(settings, "phone_region", None)

    def read(self, cursor: Cursor | None) -> Iterator[Page]:
        page = the_page(self.context)
        graph = PageGraph(self.context, page)
        newest: dict[str, int] = dict((cursor or {}).get("newest") or {})
        recent: dict[str, dict[str, int]] = {k: dict(v) for k, v in ((cursor or {}).get("recent") or {}).items()}
        state = dict((cursor or {}).get("pass") or {})
        if not state:
            listed = graph.pages((page.external_id, "leadgen_forms"), {"fields": FORM_FIELDS})
            listed = [form for form in listed if chosen_form(page, str(form.get("id")))]  # only the forms chosen
            state = {
                "full": cursor is None,
                "forms": [str(f["id"]) for f in sorted(listed, key=lambda f: str(f.get("id"))) if f.get("id")],
                "questions": {str(f["id"]): questions_of(f) for f in listed if f.get("id")},
                "at": 0,
                "after": None,
            }
            newest = {form: newest[form] for form in state["forms"] if form in newest}
            recent = {form: recent[form] for form in state["forms"] if form in recent}
            if state["forms"]:
                # The pass's forms are kept before the first form is read: a slice the rate limit stops (a Page's
                # bucket refills about a call a second) resumes with that read, instead of listing the forms again
                # and spending its one call on them every time.
                kept = {"newest": dict(newest), "recent": {k: dict(v) for k, v in recent.items()}, "pass": dict(state)}
                yield Page([], [], kept, last=False, full=bool(state["full"]))
        full = bool(state["full"])
        forms: list[str] = state["forms"]
        stored_after = state.get("after")
        if not forms:
            yield Page([], [], {"newest": newest, "recent": recent}, last=True, full=full)
            return
        while state["at"] < len(forms):
            form: str = forms[state["at"]]
            if "since" not in state:
                known = newest.get(form)
                state["since"] = known - self.overlap if known is not None else int(time.time()) - self.backfill
            try:
                body = graph.call("GET", (form, "leads"), self._params(state["since"], state["after"]))
            except InvalidParameter as exc:
                if state["after"] is None or state["after"] != stored_after:
                    raise
                raise CursorExpired(
                    "Facebook no longer accepts the stored paging cursor; a full pass is needed"
                ) from exc
            stored_after = None
            leads = self._leads(body, page.external_id, state["questions"].get(form, {}), set(recent.get(form, ())))
            self._note(form, leads, newest, recent)
            after = next_cursor(body)
            if after is None:
                state = {**state, "at": state["at"] + 1, "after": None}
                state.pop("since", None)
            else:
                state = {**state, "after": after}
            last = state["at"] >= len(forms)
            checkpoint: dict[str, Any] = {"newest": dict(newest), "recent": {k: dict(v) for k, v in recent.items()}}
            if not last:
                checkpoint["pass"] = dict(state)
            yield Page(list(leads), [], checkpoint, last=last, full=full)

    def _params(self, since: int, after: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "fields": LEAD_FIELDS,
            "limit": self.page_size,
            "filtering": [{"field": "time_created", "operator": "GREATER_THAN_OR_EQUAL", "value": since}],
        }
        if after:
            params["after"] = after
        return params

    def _leads(self, body: Mapping[str, Any], page_id: str, questions: Mapping[str, str], seen: set[str]) -> list[Lead]:
        items = body.get("data")
        if not isinstance(items, list):
            raise PayloadRejected("Facebook answered a page of leads without a data list")
        try:
            leads = [to_lead(item, page_id, questions, self.region) for item in items if isinstance(item, Mapping)]
        except ValueError as exc:
            raise PayloadRejected(f"Facebook answered a lead this hub cannot read ({exc})") from exc
        return [lead for lead in leads if lead.external_id not in seen]

    def _note(self, form: str, leads: list[Lead], newest: dict[str, int], recent: dict[str, dict[str, int]]) -> None:
        """Move the form's newest time forward and keep the ids seen within the overlap before it, with their times."""
        seen = {lead.external_id: int(lead.created_time.timestamp()) for lead in leads if lead.created_time}
        if not seen and form not in newest:
            return
        top = max([*seen.values(), newest.get(form, 0)])
        newest[form] = top
        window = top - self.overlap
        recent[form] = {key: at for key, at in {**recent.get(form, {}), **seen}.items() if at >= window}


def fetch_lead(ctx: StreamContext, leadgen_id: str) -> Lead:
    """One lead by id with the Page's token (`ctx.resource`), mapped with its form's questions."""
    page = the_page(ctx)
    graph = PageGraph(ctx, page)
    item = graph.call("GET", (leadgen_id,), {"fields": LEAD_FIELDS})
    form_id = item.get("form_id")
    questions: dict[str, str] = {}
    if form_id:
        questions = questions_of(graph.call("GET", (str(form_id),), {"fields": "questions"}))
    try:
        return to_lead(item, page.external_id, questions, setting(ctx.settings, "phone_region", None))
    except ValueError as exc:
        raise PayloadRejected(f"Facebook answered a lead this hub cannot read ({exc})") from exc


def process(delivery: Any, ctx: StreamContext) -> Page:
    """A leadgen webhook's delivery (its payload holds `leadgen_id`) as a page of the one lead. The page's checkpoint
    is empty: a lead a webhook brings must not move the poll's cursor, which stays the backstop."""
    payload = delivery.payload if hasattr(delivery, "payload") else delivery
    leadgen_id = payload.get("leadgen_id") if isinstance(payload, Mapping) else None
    if isinstance(leadgen_id, bool) or not isinstance(leadgen_id, str | int) or not str(leadgen_id):
        raise PayloadRejected("the delivery names no leadgen_id")
    return Page([fetch_lead(ctx, str(leadgen_id))], [], {}, last=False, full=False)


__all__ = [
    "FacebookLeadsStream",
    "PageSubscription",
    "chosen_form",
    "created",
    "fetch_lead",
    "list_forms",
    "list_pages",
    "process",
]
