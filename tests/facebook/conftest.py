"""A hub wired to the Facebook sandbox: real sandbox process, real API server, a real worker, a browser-like client
that answers the Login dialog."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, session_factory
from core.settings import Settings
from hub.app import create_app
from hub.views import run_view
from sandbox.admin_client import SandboxAdmin
from sandbox.process import running_sandbox
from sync.models import SyncRun
from tests import signin
from tests.conftest import LiveServer, Worker, free_port, settings_from_env, wait_for
from tests.sandbox.browser import authorize

CAPABILITY = "leads"
PAGE_SIZE = 4
TERMINAL = {"succeeded", "failed", "cancelled"}
GOOGLE_CLIENT = "synchub-facebook-tests"
VERIFY_TOKEN = "facebook-verify-token-0123456789"
ALL_PERMISSIONS = ["leads_retrieval", "pages_show_list", "pages_manage_metadata", "pages_read_engagement"]


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with running_sandbox(seed=20261202) as url:
        yield url


@pytest.fixture(scope="session")
def admin(sandbox_url: str) -> Iterator[SandboxAdmin]:
    with SandboxAdmin(sandbox_url) as client:
        yield client


@dataclass
class Form:
    action: str
    inputs: list[tuple[str, str, str]] = field(default_factory=list)  # (type, name, value)

    def hidden(self) -> dict[str, str]:
        return {name: value for kind, name, value in self.inputs if kind == "hidden"}

    def boxes(self, name: str) -> list[str]:
        return [value for kind, box, value in self.inputs if kind == "checkbox" and box == name]


class Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values["action"]))
        elif tag == "input" and self.forms:
            self.forms[-1].inputs.append((values.get("type", ""), values.get("name", ""), values.get("value", "")))


def forms(page: httpx.Response) -> list[Form]:
    parser = Forms()
    parser.feed(page.text)
    return parser.forms


class Facebook:
    """The sandbox's Facebook, through its admin API."""

    def __init__(self, admin: SandboxAdmin) -> None:
        self.admin = admin

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.admin.call(method, "/facebook" + path, **kwargs)

    def user(self, forms_per_page: int = 1, leads: int = 0, pages: int = 1) -> dict[str, Any]:
        """A new Facebook user with Pages, each with forms holding `leads` leads; the user's summary."""
        user = self.call("POST", "/users", json={"name": f"Fay {uuid.uuid4().hex[:6]}"})
        for p in range(pages):
            page = self.call("POST", f"/users/{user['id']}/pages", json={"name": f"Page {p} {user['id']}"})
            for f in range(forms_per_page):
                form = self.call("POST", f"/pages/{page['id']}/forms", json={"name": f"Form {f}"})
                if leads:
                    self.leads(form["id"], leads)
        return self.summary(user["id"])

    def summary(self, user_id: str) -> dict[str, Any]:
        found: dict[str, Any] = next(u for u in self.call("GET", "/users") if u["id"] == user_id)
        return found

    def leads(self, form_id: str, count: int = 1, **extra: Any) -> list[str]:
        body = {"count": count, "webhook": False, **extra}
        created: list[str] = self.call("POST", f"/forms/{form_id}/leads", json=body)["leads"]
        return created

    def inject(self, code: int, **rule: Any) -> None:
        self.call("POST", "/errors", json={"code": code, **rule})

    def clear_errors(self) -> None:
        self.call("DELETE", "/errors")

    def settings(self, **changes: Any) -> dict[str, Any]:
        found: dict[str, Any] = self.call("PATCH", "/settings", json=changes)
        return found


@dataclass
class FacebookHub:
    url: str
    env: dict[str, str]
    settings: Settings
    admin: SandboxAdmin
    facebook: Facebook
    app_id: str
    app_secret: str
    engine: Engine
    sessions: sessionmaker[Session]
    jwt_secret: str

    def browser(self, user: str = "user-f", workspace: str = "ws-f") -> httpx.Client:
        return signin.browser(self.url, self.jwt_secret, user, workspace, base_url=self.admin.base_url, timeout=30)

    def login(
        self,
        browser: httpx.Client,
        fb_user: str,
        permissions: list[str] | None = None,
        reconnect: uuid.UUID | None = None,
    ) -> tuple[httpx.Response, str]:
        """From the hub's connect link through the Login dialog (ticking `permissions`, every Page) to the
        redirect back to the hub, not yet followed; and the dialog's URL."""
        params = {"capabilities": CAPABILITY, **({"reconnect": str(reconnect)} if reconnect else {})}
        start = signin.start_connect(browser, self.url, "facebook", **params)
        assert start.status_code == 303, start.text
        dialog = start.headers["location"]
        chooser = browser.get(dialog)
        assert chooser.status_code == 200, chooser.text
        who = next(f for f in forms(chooser) if f.hidden().get("user") == fb_user)
        consent = browser.post(self.admin.base_url + who.action, data=who.hidden())
        assert consent.status_code == 200, consent.text
        form = forms(consent)[0]
        shown = form.boxes("permission")
        ticked = shown if permissions is None else [p for p in shown if p in permissions]
        data = {**form.hidden(), "permission": ticked, "page": form.boxes("page"), "action": "allow"}
        back = browser.post(self.admin.base_url + form.action, data=data)
        assert back.status_code == 302, back.text
        return back, dialog

    def connect(self, browser: httpx.Client, fb_user: str, **kw: Any) -> uuid.UUID:
        back, _ = self.login(browser, fb_user, **kw)
        done = browser.get(back.headers["location"])
        assert done.status_code == 303, done.text
        return uuid.UUID(done.headers["location"].split("connected=")[1])

    def connect_google(self, browser: httpx.Client, account: str) -> uuid.UUID:
        """Connect a Google account's contacts and wait for their first sync."""
        start = signin.start_connect(browser, self.url, "google", capabilities="contacts")
        assert start.status_code == 303, start.text
        back = authorize(browser, start.headers["location"], account=account)
        done = browser.get(back.headers["location"])
        assert done.status_code == 303, done.text
        connection_id = uuid.UUID(done.headers["location"].split("connected=")[1])

        def synced() -> bool:
            capability = next(
                c for c in self.connection(browser, connection_id)["capabilities"] if c["name"] == "contacts"
            )
            return bool(capability["last_run"]) and capability["last_run"]["status"] == "succeeded"

        wait_for(synced, timeout=30, what="the contacts to sync")
        return connection_id

    def connection(self, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, Any]:
        response = browser.get(f"{self.url}/api/v1/connections/{connection_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def capability(self, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, Any]:
        found: dict[str, Any] = next(
            c for c in self.connection(browser, connection_id)["capabilities"] if c["name"] == CAPABILITY
        )
        return found

    def resources_url(self, connection_id: uuid.UUID, resource_id: str | None = None) -> str:
        path = f"{self.url}/api/v1/connections/{connection_id}/capabilities/{CAPABILITY}/resources"
        return f"{path}/{resource_id}" if resource_id else path

    def pages(self, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, dict[str, Any]]:
        """The chooser's Pages by name."""
        answer = browser.get(self.resources_url(connection_id))
        assert answer.status_code == 200, answer.text
        return {resource["name"]: resource for resource in answer.json()["resources"]}

    def choose(
        self, browser: httpx.Client, connection_id: uuid.UUID, name: str, selected: bool = True
    ) -> dict[str, Any]:
        resource_id = self.pages(browser, connection_id)[name]["id"]
        answer = browser.put(self.resources_url(connection_id, resource_id), json={"selected": selected})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def backfill(self, browser: httpx.Client, connection_id: uuid.UUID, name: str) -> dict[str, Any]:
        """Choose a Page and wait for its first run to end."""
        run = self.choose(browser, connection_id, name)["run"]
        assert run is not None
        return self.wait_run(run)

    def wait_run(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            with self.sessions() as session:
                run = run_view(session.get(SyncRun, uuid.UUID(run_id)))
            return dict(run) if run and run["status"] in TERMINAL else None

        found: dict[str, Any] = wait_for(ended, timeout=timeout, interval=0.05, what="the run to end")
        return found

    def leads(self, browser: httpx.Client, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {"limit": 1000, **params, **({"cursor": cursor} if cursor else {})}
            answer = browser.get(f"{self.url}/api/v1/leads", params=query)
            assert answer.status_code == 200, answer.text
            found.extend(answer.json()["leads"])
            cursor = answer.json()["next_cursor"]
            if not cursor:
                return found

    def mark(self) -> int:
        entries = self.admin.request_log()
        return entries[-1]["id"] if entries else 0

    def graph_calls(self, after: int = 0) -> list[dict[str, Any]]:
        """Graph requests this hub's app made since `after` (Login dialog and admin calls left out)."""
        return [
            dict(e)
            for e in self.admin.request_log(after)
            if e["app"] == self.app_id and "/dialog/" not in e["path"] and not e["path"].startswith("/_sandbox")
        ]


def facebook_env(hub_env: dict[str, str], sandbox_url: str, port: int, app_id: str, app_secret: str) -> dict[str, str]:
    """Facebook Lead Ads, and Google Contacts beside it for the CRM contacts leads are linked to."""
    return {
        **hub_env,
        "SYNCHUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SYNCHUB_CONNECTORS": "facebook_leads,google_contacts",
        "SYNCHUB_GOOGLE__CLIENT_ID": GOOGLE_CLIENT,
        "SYNCHUB_GOOGLE__CLIENT_SECRET": app_secret,
        "SYNCHUB_GOOGLE__BASE_URL": sandbox_url,
        "SYNCHUB_LOG_LEVEL": "INFO",
        "SYNCHUB_FACEBOOK__CLIENT_ID": app_id,
        "SYNCHUB_FACEBOOK__CLIENT_SECRET": app_secret,
        "SYNCHUB_FACEBOOK__BASE_URL": sandbox_url,
        "SYNCHUB_FACEBOOK_LEADS__PAGE_SIZE": str(PAGE_SIZE),
        "SYNCHUB_FACEBOOK_LEADS__VERIFY_TOKEN": VERIFY_TOKEN,
        "SYNCHUB_FACEBOOK_LEADS__APP_REQUESTS_PER_MINUTE": "60000",
        "SYNCHUB_FACEBOOK_LEADS__CONNECTION_REQUESTS_PER_MINUTE": "60000",
        "SYNCHUB_FACEBOOK_LEADS__RESOURCE_REQUESTS_PER_MINUTE": "60000",
        "SYNCHUB_CELERY__TASK_TIME_LIMIT": "20",
        "SYNCHUB_CELERY__TASK_SOFT_TIME_LIMIT": "15",
        "SYNCHUB_CELERY__SYNC_TIME_BUDGET": "5",
        "SYNCHUB_CELERY__MAX_COUNTDOWN": "5",
        "SYNCHUB_CELERY__RETRY_BASE_SECONDS": "0.5",
        "SYNCHUB_CELERY__VISIBILITY_TIMEOUT": "30",
        "SYNCHUB_CELERY__RUN_LOCK_SECONDS": "5",
    }


@pytest.fixture(scope="module")
def facebook_hub(
    hub_env: dict[str, str], sandbox_url: str, admin: SandboxAdmin, jwt_secret: str
) -> Iterator[FacebookHub]:
    port = free_port()
    app_id, app_secret = str(secrets.randbelow(10**15) + 10**15), secrets.token_urlsafe(24)
    redirect = f"http://127.0.0.1:{port}/oauth/facebook/callback"
    admin.call("POST", "/facebook/apps", json={"app_id": app_id, "app_secret": app_secret, "redirect_uris": [redirect]})
    admin.register_client(GOOGLE_CLIENT, app_secret, [f"http://127.0.0.1:{port}/oauth/google/callback"])
    env = facebook_env(hub_env, sandbox_url, port, app_id, app_secret)
    settings = settings_from_env(env)
    engine = make_engine(settings.database_url)
    with LiveServer(create_app(settings, engine), port=port) as server:
        worker = Worker(env, queues="sync,maintenance", concurrency=1).start()
        try:
            yield FacebookHub(
                server.url,
                env,
                settings,
                admin,
                Facebook(admin),
                app_id,
                app_secret,
                engine,
                session_factory(engine),
                jwt_secret,
            )
        finally:
            worker.stop()
    engine.dispose()


Factory = Callable[..., FacebookHub]
