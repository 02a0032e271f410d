"""Graph calls through facebook-business, one API object per token: never the SDK's process-global default
(library-notes: `FacebookAdsApi.init` also installs a crash reporter), `appsecret_proof` on every call."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import requests
from facebook_business.api import FacebookAdsApi, FacebookResponse
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from connectors.base import StreamContext
from connectors.facebook_leads.errors import classify, exhausted
from core.errors import ConnectorError, PayloadRejected, RateLimited, Retryable
from core.metrics import provider_answered

GRAPH_VERSION = "v25.0"
DEFAULT_GRAPH = "https://graph.facebook.com"
TIMEOUT_SECONDS = 15
CONNECTOR = "facebook_leads"


class Graph:
    """Graph as one token sees it: every call counted for the run, behind the run's buckets and retry policy."""

    def __init__(self, ctx: StreamContext, access_token: str) -> None:
        if not ctx.app_id or not ctx.app_secret:
            raise ConnectorError("the Facebook app's id and secret are not configured")
        session = FacebookSession(ctx.app_id, ctx.app_secret, access_token, timeout=TIMEOUT_SECONDS)
        session.GRAPH = (ctx.base_url or DEFAULT_GRAPH).rstrip("/")  # on the instance, never the class
        self.api = FacebookAdsApi(session, api_version=GRAPH_VERSION)
        self.ctx = ctx
        self.spent: RateLimited | None = None

    def call(self, method: str, path: tuple[str, ...], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = self.ctx.attempt(lambda: self._once(method, path, dict(params or {})))
        return body

    def _once(self, method: str, path: tuple[str, ...], params: dict[str, Any]) -> dict[str, Any]:
        if self.spent is not None:  # the last answer said the quota is spent: no call until it is back
            spent, self.spent = self.spent, None
            raise spent
        self.ctx.sent()
        try:
            response: FacebookResponse = self.api.call(method, path, params=params)
        except FacebookRequestError as exc:
            provider_answered(CONNECTOR, exc.http_status())
            # Not chained: the SDK's message quotes the request's parameters.
            raise classify(exc.http_status(), exc.body(), dict(exc.http_headers() or {})) from None
        except requests.RequestException as exc:
            provider_answered(CONNECTOR, None)
            # Not chained: a requests error quotes the URL, whose query carries the token.
            raise Retryable(f"Facebook could not be reached ({type(exc).__name__})") from None
        provider_answered(CONNECTOR, response.status())
        self.spent = exhausted(dict(response.headers() or {}))
        body = response.json()
        if not isinstance(body, dict):
            raise PayloadRejected("Facebook answered with something that is not a JSON object")
        return body

    def pages(self, path: tuple[str, ...], params: Mapping[str, Any]) -> list[dict[str, Any]]:
        return every(self.call, path, params)


Call = Callable[[str, tuple[str, ...], Mapping[str, Any] | None], dict[str, Any]]


def every(call: Call, path: tuple[str, ...], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every item of an edge, following `after` cursors (for short listings: Pages, forms)."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        body = call("GET", path, {**params, **({"after": after} if after else {})})
        found.extend(item for item in body.get("data") or () if isinstance(item, dict))
        after = next_cursor(body)
        if after is None:
            return found


def next_cursor(body: Mapping[str, Any]) -> str | None:
    """The `after` cursor of a page that has a next one; None on the last (Graph leaves `next` out there)."""
    paging = body.get("paging")
    if not isinstance(paging, Mapping) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, Mapping) else None
    return after if isinstance(after, str) and after else None
