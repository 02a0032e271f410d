"""Meta's Page webhooks for Lead Ads (providers.md 4.6): the `hub.verify_token` handshake, `X-Hub-Signature-256`
over the raw body with the app secret, a batch of `leadgen` changes split into one delivery per (Page, lead), and
each delivery fetched with the Page's token into its CRM lead.
https://developers.facebook.com/docs/graph-api/webhooks/getting-started"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.base import Delivery, Page, Resource, StreamContext, WebhookKeys
from connectors.facebook_leads.errors import InvalidParameter
from connectors.facebook_leads.leads import LEAD_FIELDS, questions_of, to_lead
from connectors.facebook_leads.leads import identifier as graph_id
from connectors.facebook_leads.stream import PageGraph, chosen_form, setting, the_page
from core.errors import ConnectorError, PayloadRejected

SIGNATURE_HEADER = "x-hub-signature-256"
SIGNATURE_PREFIX = "sha256="
LEADGEN = "leadgen"
QUESTIONS_KEPT = 4096
GRAPH_MAX_IDS = 50  # Graph reads at most 50 ids in one request
NOTHING = Page([], [], {}, last=False, full=False)
"""Nothing for this connection: the lead's form is not one it chose."""
ID = re.compile(r"[0-9]{1,40}")
UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class Malformed(ValueError):
    """A body that is not a Page webhook Meta would send: answered 400, nothing stored."""


def identifier(value: object, what: str) -> str:
    """A Graph id given as a JSON string of digits or a non-negative integer (both occur, providers.md 4.6)."""
    if isinstance(value, bool):
        raise Malformed(f"{what} is not an id")
    if isinstance(value, int) and value >= 0:
        value = str(value)
    if isinstance(value, str) and ID.fullmatch(value):
        return value
    raise Malformed(f"{what} is not an id")


def optional_identifier(value: object) -> str | None:
    try:
        return identifier(value, "id")
    except Malformed:
        return None


def label(name: str) -> str:
    """A field or object name as the inbox may keep it: printable ASCII, 64 characters at most."""
    return UNPRINTABLE.sub("?", name[:64])


def ignored(kind: str, route_key: str, part: object) -> Delivery:
    """A change the hub does not sync (another field, another object): recorded as ignored, recognised when Meta
    sends it again by the hash of what it said (`kind` already a label)."""
    said = json.dumps([kind, route_key, part], sort_keys=True, default=str)  # ASCII: lone surrogates escaped
    digest = hashlib.sha256(said.encode()).hexdigest()
    return Delivery(f"ignored:{digest}", route_key, {"kind": kind}, ignored=True)


def leadgen(entry_page: str, value: object) -> Delivery:
    if not isinstance(value, Mapping):
        raise Malformed("a leadgen change without a value")
    lead = identifier(value.get("leadgen_id"), "leadgen_id")
    page = entry_page
    if value.get("page_id") is not None:
        page = identifier(value.get("page_id"), "page_id")
        if page != entry_page:
            raise Malformed("a leadgen change names another Page than its entry")
    payload: dict[str, Any] = {"leadgen_id": lead, "page_id": page}
    form = optional_identifier(value.get("form_id"))
    if form is not None:
        payload["form_id"] = form
    return Delivery(f"{page}:{lead}", page, payload)


def split_body(body: bytes) -> list[Delivery]:
    """Each `leadgen` change of each Page entry as a delivery keyed (Page, lead) and routed by Page; changes of
    other fields, entries without changes (Messenger's `messaging`) and other objects are ignored ones."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Malformed("the body is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("object"), str):
        raise Malformed("the body names no object")
    if not isinstance(data.get("entry"), list):
        raise Malformed("the body has no entry list")
    if data["object"] != "page":
        return [ignored(f"object:{label(data['object'])}", "", data["entry"])]
    found: dict[str, Delivery] = {}
    for entry in data["entry"]:
        if not isinstance(entry, dict):
            raise Malformed("an entry is not an object")
        page = identifier(entry.get("id"), "entry id")
        changes = entry.get("changes")
        if changes is None:
            delivery = ignored("entry", page, entry)
            found.setdefault(delivery.dedupe_key, delivery)
            continue
        if not isinstance(changes, list):
            raise Malformed("an entry's changes are not a list")
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("field"), str):
                raise Malformed("a change names no field")
            if change["field"] == LEADGEN:
                delivery = leadgen(page, change.get("value"))
            else:
                delivery = ignored(f"field:{label(change['field'])}", page, change)
            found.setdefault(delivery.dedupe_key, delivery)
    return list(found.values())


class FacebookLeadsWebhook:
    """The `Webhook` of `facebook_leads` (connectors/base.py)."""

    def handshake(self, query: Mapping[str, str], keys: WebhookKeys) -> str | None:
        token, challenge = query.get("hub.verify_token"), query.get("hub.challenge")
        if query.get("hub.mode") != "subscribe" or token is None or not challenge or not keys.verify_token:
            return None
        if not hmac.compare_digest(token.encode(), keys.verify_token.encode()):
            return None
        return challenge

    def verify(self, headers: Mapping[str, str], body: bytes, keys: WebhookKeys) -> bool:
        given = headers.get(SIGNATURE_HEADER)
        if not given or not keys.client_secret:
            return False
        expected = SIGNATURE_PREFIX + hmac.new(keys.client_secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), expected.encode())

    def split(self, body: bytes) -> list[Delivery]:
        return split_body(body)

    batch_size = GRAPH_MAX_IDS

    def __init__(self) -> None:
        self.questions: dict[str, dict[str, str]] = {}

    def process(self, delivery: Delivery, ctx: StreamContext) -> Page | None:
        result = self.process_batch([delivery], ctx)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def process_batch(self, deliveries: Sequence[Delivery], ctx: StreamContext) -> list[Page | Exception | None]:
        """The leads fetched with the routed Page's token and `appsecret_proof`, all in one Graph request
        (`?ids=`), each as a page of one lead (upserted by its id, so the backfill and a redelivery never double it;
        its empty checkpoint leaves the poll's alone). Graph refuses the whole request when it cannot load one of
        the ids, so then each is fetched alone and only that one fails. A published lead form's questions cannot
        change (Meta only lets it be archived or copied), so each form's are asked once per worker process."""
        page = the_page(ctx)
        # A lead of a form the user did not choose is not fetched when the webhook names its form.
        skipped = [not chosen_form(page, d.payload.get("form_id")) and "form_id" in d.payload for d in deliveries]
        wanted = [str(d.payload["leadgen_id"]) for d, skip in zip(deliveries, skipped, strict=True) if not skip]
        fetched = iter(self._fetch(ctx, page, wanted) if wanted else [])
        region = setting(ctx.settings, "phone_region", None)
        return [NOTHING if skip else self._chosen(page, next(fetched), region) for skip in skipped]

    def _fetch(
        self, ctx: StreamContext, page: Resource, wanted: list[str]
    ) -> list[tuple[Mapping[str, Any] | Exception, dict[str, dict[str, str] | Exception]]]:
        graph = PageGraph(ctx, page)
        try:
            found = graph.call("GET", (), {"ids": ",".join(dict.fromkeys(wanted)), "fields": LEAD_FIELDS})
        except InvalidParameter:
            if len(set(wanted)) == 1:
                raise
            items: list[Mapping[str, Any] | Exception] = [self._alone(graph, lead) for lead in wanted]
        else:
            items = [self._item(found, lead) for lead in wanted]
        mine = {f for item in items if isinstance(item, Mapping) if (f := form_of(item)) and chosen_form(page, f)}
        forms = self._forms(graph, mine)
        return [(item, forms) for item in items]

    def _chosen(
        self,
        page: Resource,
        fetched: tuple[Mapping[str, Any] | Exception, dict[str, dict[str, str] | Exception]],
        region: str | None,
    ) -> Page | Exception:
        item, forms = fetched
        if isinstance(item, Mapping) and not chosen_form(page, form_of(item)):
            return NOTHING  # a form the user did not choose: recorded as ignored
        return self._page(item, page.external_id, forms, region)

    @staticmethod
    def _item(found: Mapping[str, Any], lead: str) -> Mapping[str, Any] | Exception:
        item = found.get(lead)
        if not isinstance(item, Mapping):
            return PayloadRejected("Facebook's answer left out a lead it was asked for")
        return item

    @staticmethod
    def _alone(graph: PageGraph, lead: str) -> Mapping[str, Any] | Exception:
        try:
            return graph.call("GET", (lead,), {"fields": LEAD_FIELDS})
        except ConnectorError as exc:
            return exc

    def _forms(self, graph: PageGraph, forms: set[str]) -> dict[str, dict[str, str] | Exception]:
        """Each form's questions, from this process's memory or one Graph request for those it has not seen."""
        unknown = sorted(form for form in forms if form not in self.questions)
        fetched: dict[str, dict[str, str] | Exception] = {}
        if len(unknown) == 1:
            fetched[unknown[0]] = self._form_alone(graph, unknown[0])
        elif unknown:
            try:
                answer = graph.call("GET", (), {"ids": ",".join(unknown), "fields": "questions"})
            except InvalidParameter:
                fetched = {form: self._form_alone(graph, form) for form in unknown}
            else:
                fetched = {form: questions_of(answer.get(form) or {}) for form in unknown}
        if len(self.questions) + len(fetched) > QUESTIONS_KEPT:
            self.questions.clear()
        self.questions.update({form: known for form, known in fetched.items() if isinstance(known, dict)})
        return {form: fetched.get(form) or self.questions.get(form) or {} for form in forms}

    @staticmethod
    def _form_alone(graph: PageGraph, form: str) -> dict[str, str] | Exception:
        try:
            return questions_of(graph.call("GET", (form,), {"fields": "questions"}))
        except ConnectorError as exc:
            return exc

    @staticmethod
    def _page(
        item: Mapping[str, Any] | Exception,
        page_id: str,
        forms: Mapping[str, dict[str, str] | Exception],
        region: str | None,
    ) -> Page | Exception:
        if isinstance(item, Exception):
            return item
        form = form_of(item)
        questions = forms.get(form, {}) if form is not None else {}
        if isinstance(questions, Exception):
            return questions
        try:
            lead = to_lead(item, page_id, questions, region)
        except ValueError as exc:
            return PayloadRejected(f"Facebook answered a lead this hub cannot read ({exc})")
        return Page([lead], [], {}, last=False, full=False)


def form_of(item: Mapping[str, Any]) -> str | None:
    return graph_id(item.get("form_id"))


WEBHOOK = FacebookLeadsWebhook()
