"""Helpers for the fake Facebook's tests: a Graph client over requests with appsecret_proof, the facebook-business
SDK pointed at the sandbox, the Login dialog driven as a browser would, and a webhook receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from facebook_business.api import FacebookAdsApi, FacebookSession

from sandbox.admin_client import SandboxAdmin
from sandbox.facebook.admin_client import FacebookAdmin

APP_ID, APP_SECRET = "1234567890123", "fb-test-app-secret"
REDIRECT_URI = "http://127.0.0.1:8000/oauth/facebook/callback"
LEAD_PERMISSIONS = [
    "pages_show_list",
    "leads_retrieval",
    "pages_manage_metadata",
    "pages_read_engagement",
    "ads_management",
]
VERSION = "v25.0"


def proof(token: str, secret: str = APP_SECRET) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


ERROR_KEYS = {"message", "type", "code", "fbtrace_id"}
OPTIONAL_ERROR_KEYS = {"error_subcode", "is_transient", "error_user_title", "error_user_msg", "error_data"}


def graph_shaped(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Every Graph answer is a JSON object; every failure is exactly Meta's error envelope."""
    if "json" not in response.headers.get("content-type", ""):
        return
    body = response.json()
    assert isinstance(body, dict), body
    if response.status_code != 200:
        assert set(body) == {"error"}, body
        keys = set(body["error"])
        assert ERROR_KEYS <= keys <= ERROR_KEYS | OPTIONAL_ERROR_KEYS, body
        assert isinstance(body["error"]["code"], int) and isinstance(body["error"]["message"], str)


def graph_session() -> requests.Session:
    session = requests.Session()
    session.hooks["response"].append(graph_shaped)
    return session


@dataclass
class Graph:
    """Graph over plain requests: access_token and appsecret_proof on every call, as the SDK sends them; every
    answer's shape checked."""

    url: str
    session: requests.Session = field(default_factory=graph_session)

    def call(
        self,
        method: str,
        path: str,
        token: str | None,
        version: str | None = VERSION,
        with_proof: bool = True,
        **params: Any,
    ) -> requests.Response:
        if token is not None:
            params["access_token"] = token
            if with_proof and "|" not in token:
                params["appsecret_proof"] = proof(token)
        prefix = f"/{version}" if version else ""
        if method == "GET":
            return self.session.get(f"{self.url}{prefix}{path}", params=params, timeout=10)
        return self.session.request(method, f"{self.url}{prefix}{path}", data=params, timeout=10)

    def get(self, path: str, token: str | None, **params: Any) -> requests.Response:
        return self.call("GET", path, token, **params)

    def ok(self, method: str, path: str, token: str | None, **params: Any) -> dict[str, Any]:
        response = self.call(method, path, token, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def error_of(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 400, (response.status_code, response.text)
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    return error


def sdk_api(url: str, token: str, secret: str = APP_SECRET) -> FacebookAdsApi:
    """One FacebookAdsApi per token, never the SDK's global default, with Graph at the sandbox."""
    session = FacebookSession(APP_ID, secret, token)
    session.GRAPH = url
    return FacebookAdsApi(session, api_version=VERSION)


@dataclass
class Form:
    action: str
    hidden: dict[str, str] = field(default_factory=dict)
    boxes: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


class Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values["action"]))
        elif tag == "input" and values.get("type") == "hidden":
            self.forms[-1].hidden[values["name"]] = values["value"]
        elif tag == "input" and values.get("type") == "checkbox":
            box = (values["value"], "checked" in values)
            self.forms[-1].boxes.setdefault(values["name"], []).append(box)
        elif tag == "button" and "name" in values:
            self.forms[-1].buttons.append(values["value"])


def forms(html: str) -> list[Form]:
    parser = Forms()
    parser.feed(html)
    return parser.forms


def dialog_url(url: str, scope: list[str], state: str = "st4te", **extra: str) -> str:
    params = {"client_id": APP_ID, "redirect_uri": REDIRECT_URI, "state": state, "scope": ",".join(scope), **extra}
    return f"{url}/{VERSION}/dialog/oauth?{urlencode(params)}"


def login(
    url: str,
    scope: list[str],
    user: str = "Dana Demo",
    decline: tuple[str, ...] = (),
    pages: list[str] | None = None,
    action: str = "allow",
    **extra: str,
) -> tuple[requests.Response, Form]:
    """Go through the dialog as the user: pick the user, untick `decline`, tick `pages` (None: as shown).
    Returns the redirect back to the app and the consent form that was shown."""
    return login_at(url, dialog_url(url, scope, **extra), user, decline, pages, action)


def login_at(
    url: str,
    start: str,
    user: str = "Dana Demo",
    decline: tuple[str, ...] = (),
    pages: list[str] | None = None,
    action: str = "allow",
) -> tuple[requests.Response, Form]:
    """`login` from a dialog URL the caller built."""
    browser = requests.Session()
    chooser = browser.get(start, timeout=10)
    assert chooser.status_code == 200, chooser.text
    choice = next(f for f in forms(chooser.text) if user in chooser.text.split(f.hidden["user"])[1][:200])
    consent = browser.post(url + choice.action, data=choice.hidden, timeout=10, allow_redirects=False)
    form = forms(consent.text)[0]
    data: dict[str, Any] = dict(form.hidden)
    data["permission"] = [p for p, _ in form.boxes.get("permission", []) if p not in decline]
    shown_pages = form.boxes.get("page", [])
    data["page"] = [p for p, on in shown_pages if on] if pages is None else pages
    data["action"] = action
    answer = browser.post(url + form.action, data=data, timeout=10, allow_redirects=False)
    return answer, form


def callback(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(graph: Graph, code: str, **overrides: str) -> requests.Response:
    params = {"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": REDIRECT_URI, "code": code}
    return graph.get("/oauth/access_token", None, **{**params, **overrides})


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook callback on loopback: records every request; answers POSTs from `statuses` (then 200), and the
    verify handshake by echoing hub.challenge when the verify token matches."""

    url: str
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    verify_token: str = "meatyhamhock"
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def posts(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    def wait_for(self, check: Callable[[list[Received]], bool], timeout: float = 5.0) -> list[Received]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: check(self.posts()), timeout), f"received {self.posts()}"
            return self.posts()


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def record(self) -> Received:
            length = int(self.headers.get("content-length") or 0)
            parts = urlsplit(self.path)
            item = Received(
                self.command,
                parts.path,
                {k: v[0] for k, v in parse_qs(parts.query).items()},
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
            with receiver.arrived:
                receiver.received.append(item)
                receiver.arrived.notify_all()
            return item

        def answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            item = self.record()
            if item.query.get("hub.verify_token") == receiver.verify_token:
                self.answer(200, item.query.get("hub.challenge", "").encode())
            else:
                self.answer(403)

        def do_POST(self) -> None:
            self.record()
            self.answer(receiver.statuses.pop(0) if receiver.statuses else 200, b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}/webhooks/facebook_leads")
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Facebook:
    url: str
    sandbox: SandboxAdmin
    graph: Graph

    @property
    def admin(self) -> FacebookAdmin:
        return self.sandbox.facebook

    def dana(self) -> dict[str, Any]:
        return self.admin.user("Dana Demo")

    def token(self, permissions: list[str] | None = None, **options: Any) -> dict[str, Any]:
        """Dana's long-lived token and Page tokens with the lead permissions (or `permissions`)."""
        return self.admin.mint_token(self.dana()["id"], APP_ID, permissions or LEAD_PERMISSIONS, **options)
