"""A third-party connector for the tests: address books listed by a provider on loopback, each one the user
chooses subscribed to and read as contacts, and changes to them pushed by signed webhooks. It rides on the Google
sign-in the sandbox plays (whose client secret signs the webhooks)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field

from connectors.base import (
    Capability,
    ConnectorSpec,
    Cursor,
    Delivery,
    Page,
    RateLimits,
    Resource,
    StreamContext,
    WebhookConnectorSettings,
    WebhookKeys,
)
from core.errors import ConnectorError, CursorExpired, RateLimited, Retryable
from core.scopes import Scopes
from crm.records import Contact, EmailAddress

SCOPE = "https://www.googleapis.com/auth/contacts.readonly"


class BooksSettings(WebhookConnectorSettings):
    provider_url: str = Field(description="The loopback provider the tests run.")
    page_size: int = Field(default=2, ge=1, le=100, description="People per page.")


def _checked(response: httpx.Response) -> Any:
    if response.status_code == 410:
        raise CursorExpired("the provider no longer accepts this cursor")
    if response.status_code == 429:
        retry_after = float(response.headers.get("retry-after", "1"))
        raise RateLimited("the provider throttled us", retry_after, response.headers.get("x-limit-scope", "app"))
    if response.status_code >= 500:
        raise Retryable(f"the provider answered {response.status_code}")
    if response.status_code >= 400:
        raise ConnectorError(f"the provider refused: {response.status_code}")
    return response.json() if response.content else None


def call(ctx: StreamContext, method: str, path: str, **kwargs: Any) -> Any:
    """One provider request under the hub's guard, counted as it leaves."""
    base = str(getattr(ctx.settings, "provider_url", "")).rstrip("/")

    def once() -> Any:
        headers = {"authorization": f"Bearer {ctx.credentials.access_token()}"}
        ctx.sent()
        try:
            response = httpx.request(method, base + path, headers=headers, timeout=10, **kwargs)
        except httpx.TransportError as exc:
            raise Retryable(f"the provider did not answer ({type(exc).__name__})") from exc
        return _checked(response)

    return ctx.attempt(once)


def books(ctx: StreamContext) -> list[Resource]:
    listed = call(ctx, "GET", "/books")["books"]
    return [Resource(book["id"], book["name"], {"push": book["push"]}) for book in listed]


class BookSubscriptions:
    """A book that can push is subscribed to while it is selected."""

    def selected(self, ctx: StreamContext) -> None:
        if ctx.resource is not None and ctx.resource.detail.get("push"):
            call(ctx, "POST", "/subscriptions", json={"book": ctx.resource.external_id})

    def deselected(self, ctx: StreamContext) -> None:
        if ctx.resource is not None and ctx.resource.detail.get("push"):
            call(ctx, "DELETE", "/subscriptions", params={"book": ctx.resource.external_id})


class BookStream:
    def __init__(self, ctx: StreamContext) -> None:
        assert ctx.resource is not None
        self.ctx, self.book = ctx, ctx.resource.external_id
        self.page_size = int(getattr(ctx.settings, "page_size", 2))

    def read(self, cursor: Cursor | None) -> Iterator[Page]:
        after = int(cursor["after"]) if cursor else 0
        full = cursor is None  # a pass from the start: what it does not see is deleted, within this book only
        while True:
            params = {"book": self.book, "after": after, "limit": self.page_size}
            answer = call(self.ctx, "GET", "/people", params=params)
            people = answer["people"]
            after = people[-1]["seq"] if people else after
            records = [Contact(p["id"], display_name=p["name"], emails=(EmailAddress(p["email"]),)) for p in people]
            last = not answer["more"]
            yield Page(records, [], {"after": after}, last=last, full=full)
            if last:
                return


def person(record: Mapping[str, Any]) -> Contact:
    return Contact(record["id"], display_name=record["name"], emails=(EmailAddress(record["email"]),))


class BookHook:
    """Changes to books, POSTed as `{"changes": [{"id", "book", "person", "kind"}]}` and signed with
    `X-Books-Signature: sha256=<HMAC of the body with the client secret>`; a `person` change is fetched, a `book`
    change asks for the book's sync, any other kind is ignored."""

    SIGNATURE = "x-books-signature"

    def handshake(self, query: Mapping[str, str], keys: WebhookKeys) -> str | None:
        token = query.get("token", "")
        if not hmac.compare_digest(token.encode(), keys.verify_token.encode()):
            return None
        return query.get("challenge", "")

    def verify(self, headers: Mapping[str, str], body: bytes, keys: WebhookKeys) -> bool:
        expected = "sha256=" + hmac.new(keys.client_secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers.get(self.SIGNATURE, "").encode(), expected.encode())

    def split(self, body: bytes) -> list[Delivery]:
        changes = json.loads(body)["changes"]
        if not isinstance(changes, list):
            raise ValueError("changes must be a list")
        return [self._delivery(change) for change in changes]

    @staticmethod
    def _delivery(change: Mapping[str, Any]) -> Delivery:
        change_id, book, kind = change["id"], change["book"], change["kind"]
        if not isinstance(change_id, str | int) or not isinstance(book, str) or not isinstance(kind, str):
            raise ValueError("a change needs an id, a book and a kind")
        payload = {"person": str(change.get("person", "")), "kind": kind}
        return Delivery(str(change_id), book, payload, ignored=kind not in ("person", "book"))

    def process(self, delivery: Delivery, ctx: StreamContext) -> Page | None:
        if delivery.payload["kind"] == "book":
            return None
        path = "/people/" + quote(str(delivery.payload["person"]), safe="/")
        found = call(ctx, "GET", path, params={"book": delivery.route_key})
        return Page([person(found)], [], {}, last=False, full=False)


def provider_host(ctx: StreamContext) -> str:
    """The app quota is the provider server's, as a CalDAV server's would be."""
    return urlsplit(str(getattr(ctx.settings, "provider_url", ""))).netloc


SPEC = ConnectorSpec(
    slug="loopback_books",
    display_name="Loopback Books",
    auth_provider="google",
    capabilities=(
        Capability(
            name="books",
            display_name="Address books",
            record_kind="contact",
            required=Scopes.any_of({SCOPE}),
            requested_scopes=(SCOPE,),
            stream=BookStream,
            resources=books,
            lifecycle=BookSubscriptions(),
        ),
    ),
    rate_limits=RateLimits(app_per_minute=60000, connection_per_minute=60000, app_key=provider_host),
    settings=BooksSettings,
    webhook=BookHook(),
)
