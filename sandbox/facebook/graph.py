"""What every Graph call goes through: the version prefix, the access token and its appsecret_proof, injected
errors, usage headers, and Graph's cursor paging."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.cursors import CursorError
from sandbox.facebook.errors import (
    THROTTLES,
    GraphError,
    GraphJSONResponse,
    graph_error,
    invalid_parameter,
    token_error,
    usage_headers,
)
from sandbox.facebook.state import App, FacebookState, Grant, Injection, Token
from sandbox.traffic import tag_request

DEFAULT_VERSION = "v25.0"
VERSION_PREFIX = re.compile(r"^/(v\d+\.\d+)(/.*)?$")
GRAPH_ROOTS = frozenset({"me", "debug_token", "oauth", "dialog"})
T = TypeVar("T")


def is_graph_path(path: str) -> bool:
    """Whether a (version-stripped) path is Facebook's: a node ID, `me`, the token endpoints or the dialog."""
    first = path.lstrip("/").split("/", 1)[0]
    return first.isdigit() or first in GRAPH_ROOTS


class GraphVersions:
    """Strips Graph's `/vNN.0` prefix, so routes and the request log see one path whatever version a client pins,
    and stamps Graph responses with `facebook-api-version` and trace ids as Meta does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        version = None
        if match := VERSION_PREFIX.match(scope["path"]):
            version, rest = match.group(1), match.group(2) or "/"
            scope = {**scope, "path": rest, "raw_path": rest.encode()}
        if version is None and not is_graph_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["graph_version"] = version or DEFAULT_VERSION

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["facebook-api-version"] = version or DEFAULT_VERSION
                headers["x-fb-request-id"] = secrets.token_urlsafe(12)
                headers["x-fb-trace-id"] = secrets.token_urlsafe(8)
            await send(message)

        await self.app(scope, receive, stamped)


def facebook_state(request: Request) -> FacebookState:
    state: FacebookState = request.app.state.sandbox.facebook
    return state


FacebookDep = Annotated[FacebookState, Depends(facebook_state)]


def proof(secret: str, token: str) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def header_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "oauth") and value.strip() else None


async def call_params(request: Request) -> dict[str, str]:
    """Query and form parameters together, as Graph reads them (the SDK posts its parameters as a form)."""
    params = dict(request.query_params)
    if request.method != "GET" and "form" in request.headers.get("content-type", ""):
        form = await request.form()
        params.update({key: str(value) for key, value in form.items()})
    return params


@dataclass
class Caller:
    """Whoever a token speaks for: an app (`app_id|secret`), a user, or a Page through a user."""

    token: Token | None
    app: App

    @property
    def kind(self) -> str:
        return self.token.kind if self.token else "APP"


def resolve_token(value: str | None, facebook: FacebookState, now: float) -> Caller:
    if not value:
        raise graph_error(2500, "An active access token must be used to query information about the current user.")
    if "|" in value:
        app_id, _, secret = value.partition("|")
        app = facebook.apps.get(app_id)
        if app is None or not hmac.compare_digest(app.secret, secret):
            raise token_error(None)
        return Caller(None, app)
    token = facebook.tokens.get(value)
    if token is None:
        raise token_error(None)
    app = facebook.apps[token.app_id]
    if token.invalid_subcode is not None:
        raise token_error(token.invalid_subcode, app.name)
    if token.expires_at and now >= token.expires_at:
        raise token_error(463, app.name, token.expires_at)
    grant = facebook.grants.get((token.user_id or "", token.app_id))
    if grant is None:
        raise token_error(458, app.name)
    if grant.data_access_expires_at and now >= grant.data_access_expires_at:
        raise graph_error(190, "Error validating access token: Data access has expired for this user.", 463)
    return Caller(token, app)


def check_proof(caller: Caller, params: dict[str, str]) -> None:
    if caller.token is None or not caller.app.require_proof:
        return
    given = params.get("appsecret_proof")
    if not given:
        message = "API calls from the server require an appsecret_proof argument"
        raise graph_error(100, message, type_="GraphMethodException")
    if not hmac.compare_digest(given, proof(caller.app.secret, caller.token.value)):
        raise graph_error(100, "Invalid appsecret_proof provided in the API argument", type_="GraphMethodException")


def target_page(path: str, caller: Caller, facebook: FacebookState) -> str | None:
    """The Page a call acts on, for errors injected per Page and for the usage headers."""
    node = path.strip("/").split("/", 1)[0]
    if node in facebook.pages:
        return node
    if node in facebook.forms:
        return facebook.forms[node].page_id
    if node in facebook.leads:
        return facebook.leads[node].page_id
    return caller.token.page_id if caller.token else None


def matches(rule: Injection, app_id: str, page_id: str | None, path: str, method: str) -> bool:
    return (
        rule.times != 0
        and (rule.until is None or time.time() < rule.until)
        and rule.app_id in (None, app_id)
        and rule.page_id in (None, page_id)
        and (rule.path_prefix is None or path.startswith(rule.path_prefix))
        and rule.method in (None, method)
    )


def injected(facebook: FacebookState, app_id: str, page_id: str | None, path: str, method: str) -> GraphError | None:
    rule = next((r for r in facebook.injections if matches(r, app_id, page_id, path, method)), None)
    if rule is None:
        return None
    if rule.times is not None:
        rule.times -= 1
    headers = usage_headers(rule.code, page_id or app_id, rule.estimated_time_to_regain_access)
    if rule.code not in THROTTLES:
        headers = {}
    return graph_error(
        rule.code, rule.message, rule.error_subcode, rule.type, rule.status, headers, is_transient=rule.is_transient
    )


@dataclass
class Call:
    request: Request
    facebook: FacebookState
    params: dict[str, str]
    caller: Caller
    page_id: str | None

    @property
    def token(self) -> Token:
        """The user or Page token (app-token calls never reach routes that use it)."""
        if self.caller.token is None:
            raise graph_error(2500, "An active access token must be used to query information about the current user.")
        return self.caller.token

    @property
    def grant(self) -> Grant:
        return self.facebook.grants[(self.token.user_id or "", self.token.app_id)]

    def headers(self) -> dict[str, str]:
        settings = self.facebook.settings
        headers: dict[str, str] = {}
        if settings.app_usage is not None and self.caller.kind != "PAGE":
            headers["X-App-Usage"] = json.dumps(settings.app_usage)
        if settings.page_usage is not None and self.caller.kind == "PAGE" and self.page_id:
            entry = {"type": "pages", **settings.page_usage}
            headers["X-Business-Use-Case-Usage"] = json.dumps({self.page_id: [entry]})
        return headers

    def respond(self, body: dict[str, Any]) -> GraphJSONResponse:
        return GraphJSONResponse(body, headers=self.headers())

    def fields(self, default: Sequence[str], known: frozenset[str], node_type: str) -> list[str]:
        wanted = [f.strip() for f in self.params.get("fields", "").split(",") if f.strip()] or list(default)
        for name in wanted:
            if name not in known:
                raise invalid_parameter(f"Tried accessing nonexisting field ({name}) on node type ({node_type})")
        return wanted

    def limit(self) -> int:
        settings = self.facebook.settings
        try:
            limit = int(self.params.get("limit", settings.default_limit))
        except ValueError:
            raise invalid_parameter("Param limit must be a number") from None
        return max(1, min(limit, settings.max_limit))

    def page(
        self,
        items: Sequence[T],
        key: Callable[[T], list[Any]],
        render: Callable[[T], dict[str, Any]],
        edge: str,
        descending: bool = False,
    ) -> GraphJSONResponse:
        """One page of `items` (in Graph's order, by `key`) with Graph's `paging`: cursors are keys, not offsets,
        so a page does not shift when items are added before it."""
        keys = [key(item) for item in items]

        def beyond(k: list[Any], position: list[Any]) -> bool:
            return k < position if descending else k > position

        limit = self.limit()
        if after := self.params.get("after"):
            position = self.cursor(after, edge)
            start = next((i for i, k in enumerate(keys) if beyond(k, position)), len(items))
            end = min(len(items), start + limit)
        elif before := self.params.get("before"):
            position = self.cursor(before, edge)
            end = next((i for i, k in enumerate(keys) if k == position or beyond(k, position)), len(items))
            start = max(0, end - limit)
        else:
            start, end = 0, min(len(items), limit)
        body: dict[str, Any] = {"data": [render(item) for item in items[start:end]]}
        if start < end:
            cursors = {"before": self.encode(keys[start], edge), "after": self.encode(keys[end - 1], edge)}
            paging: dict[str, Any] = {"cursors": cursors}
            if start > 0:
                paging["previous"] = self.link(before=cursors["before"])
            if end < len(items):
                paging["next"] = self.link(after=cursors["after"])
            body["paging"] = paging
        return self.respond(body)

    def encode(self, key: Any, edge: str) -> str:
        return self.facebook.cursors.encode({"edge": edge, "key": key})

    def cursor(self, value: str, edge: str) -> Any:
        try:
            payload = self.facebook.cursors.decode(value)
        except (CursorError, ValueError):
            raise invalid_parameter("Invalid cursor") from None
        if payload.get("edge") != edge:
            raise invalid_parameter("Invalid cursor")
        return payload["key"]

    def link(self, **cursor: str) -> str:
        params = {k: v for k, v in self.request.query_params.items() if k not in ("after", "before")}
        version = self.request.scope.get("state", {}).get("graph_version", DEFAULT_VERSION)
        base = str(self.request.base_url).rstrip("/")
        return f"{base}/{version}{self.request.url.path}?{urlencode({**params, **cursor})}"


async def graph_call(request: Request, facebook: FacebookDep) -> Call:
    params = await call_params(request)
    value = params.get("access_token") or header_token(request)
    app_hint = value.partition("|")[0] if value and "|" in value else None
    tag_request(request, app=app_hint)
    caller = resolve_token(value, facebook, time.time())
    account = caller.token.user_id if caller.token else None
    tag_request(request, account=account, app=caller.app.app_id)
    check_proof(caller, params)
    page_id = target_page(request.url.path, caller, facebook)
    error = injected(facebook, caller.app.app_id, page_id, request.url.path, request.method)
    if error is not None:
        raise error
    return Call(request, facebook, params, caller, page_id)


CallDep = Annotated[Call, Depends(graph_call)]


def identify(request: Request, facebook: FacebookState) -> None:
    """Tag a faulted request with the user and app its token names, without checking anything else."""
    value = request.query_params.get("access_token") or header_token(request) or ""
    token = facebook.tokens.get(value)
    if token is not None:
        tag_request(request, account=token.user_id, app=token.app_id)
    elif "|" in value:
        tag_request(request, app=value.partition("|")[0])
