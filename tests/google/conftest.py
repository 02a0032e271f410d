"""A hub wired to the Google sandbox: real sandbox process, real API server, real worker, a browser-like client."""

from __future__ import annotations

import secrets
import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from tests.conftest import Beat, LiveServer, Worker, free_port, settings_from_env, wait_for
from tests.sandbox.browser import authorize

CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts.readonly"
PAGE_SIZE = 50
TERMINAL = {"succeeded", "failed", "cancelled"}
KILLABLE = {
    "SYNCHUB_CELERY__TASK_TIME_LIMIT": "6",
    "SYNCHUB_CELERY__TASK_SOFT_TIME_LIMIT": "5",
    "SYNCHUB_CELERY__SYNC_TIME_BUDGET": "3",
    "SYNCHUB_CELERY__MAX_COUNTDOWN": "2",
    "SYNCHUB_CELERY__VISIBILITY_TIMEOUT": "10",
    "SYNCHUB_CELERY__RUN_LOCK_SECONDS": "2",
}
"""Worker limits for kill tests: short slices, and a lost message is delivered again within seconds."""


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with running_sandbox(seed=20261124) as url:
        yield url


@pytest.fixture(scope="session")
def admin(sandbox_url: str) -> Iterator[SandboxAdmin]:
    with SandboxAdmin(sandbox_url) as client:
        yield client


def new_account(admin: SandboxAdmin, contacts: int) -> str:
    email = f"user-{uuid.uuid4().hex[:10]}@sandbox.test"
    admin.seed_account(email, contacts=contacts, name="Test Person")
    return email


@dataclass
class GoogleHub:
    url: str
    env: dict[str, str]
    settings: Settings
    admin: SandboxAdmin
    client_id: str
    client_secret: str
    engine: Engine
    sessions: sessionmaker[Session]
    jwt_secret: str
    responses: list[httpx.Response] = field(default_factory=list)

    def browser(self, user: str = "user-g", workspace: str = "ws-g") -> httpx.Client:
        """A browser signed in to the hub as `user` through the CRM's session link."""
        hooks = {"response": [self._keep]}
        return signin.browser(
            self.url, self.jwt_secret, user, workspace, base_url=self.admin.base_url, timeout=60, event_hooks=hooks
        )

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)

    def consent(self, browser: httpx.Client, account: str, capabilities: str = "contacts", **kw: Any) -> httpx.Response:
        """From the connect page's form to Google's redirect back to the hub (not yet followed)."""
        start = signin.start_connect(browser, self.url, "google", capabilities=capabilities)
        assert start.status_code == 303, start.text
        return authorize(browser, start.headers["location"], account=account, **kw)

    def connect(self, browser: httpx.Client, account: str, capabilities: str = "contacts", **kw: Any) -> uuid.UUID:
        back = self.consent(browser, account, capabilities, **kw)
        assert back.status_code == 302, back.text
        done = browser.get(back.headers["location"])
        assert done.status_code == 303, done.text
        return uuid.UUID(done.headers["location"].split("connected=")[1])

    def connect_under(
        self, browser: httpx.Client, account: str, faults: list[Any], **kw: Any
    ) -> tuple[uuid.UUID, dict[str, Any]]:
        """Connect `account` while the sandbox's `faults` hold; the connection and its first run once it ended."""
        self.admin.set_faults(faults, seed=5)
        try:
            connection_id = self.connect(browser, account, **kw)
            run = self.wait_run(browser, connection_id)
        finally:
            self.admin.clear_faults()
        return connection_id, run

    def first_sync(self, user: str, contacts: int, faults: list[Any]) -> tuple[dict[str, Any], uuid.UUID, str]:
        """A new account of `contacts` connected by `user` while `faults` hold: its first run, connection, account."""
        account = new_account(self.admin, contacts=contacts)
        connection_id, run = self.connect_under(self.browser(user=user), account, faults)
        return run, connection_id, account

    def connection(self, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, Any]:
        response = browser.get(f"{self.url}/api/v1/connections/{connection_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def capability(self, browser: httpx.Client, connection_id: uuid.UUID, name: str = "contacts") -> dict[str, Any]:
        return next(c for c in self.connection(browser, connection_id)["capabilities"] if c["name"] == name)

    def wait_run(self, browser: httpx.Client, connection_id: uuid.UUID, run_id: str | None = None) -> dict[str, Any]:
        """Wait until the capability's last run (or run `run_id`, even if a follow-up came after it) has ended."""

        def ended() -> dict[str, Any] | None:
            if run_id is not None:
                with self.sessions() as session:
                    run = run_view(session.get(SyncRun, uuid.UUID(run_id)))
            else:
                run = self.capability(browser, connection_id)["last_run"]
            if run and run["status"] in TERMINAL:
                return dict(run)
            return None

        result: dict[str, Any] = wait_for(ended, timeout=120, interval=0.1, what="the sync run to end")
        return result

    def sync_now(self, browser: httpx.Client, connection_id: uuid.UUID) -> dict[str, Any]:
        response = browser.post(f"{self.url}/api/v1/connections/{connection_id}/sync")
        assert response.status_code == 200, response.text
        run_id = response.json()["runs"]["contacts"]
        assert run_id is not None
        return self.wait_run(browser, connection_id, run_id)

    def contacts(self, browser: httpx.Client, connection_id: uuid.UUID) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500, "connection_id": str(connection_id)}
            if cursor:
                params["cursor"] = cursor
            page = browser.get(f"{self.url}/api/v1/contacts", params=params).json()
            found.extend(page["contacts"])
            cursor = page["next_cursor"]
            if not cursor:
                return found

    def people_calls(self, account: str, after: int = 0) -> list[dict[str, Any]]:
        return [
            dict(e)
            for e in self.admin.request_log(after)
            if e["path"].startswith("/v1/people") and e["account"] == account
        ]

    def log_mark(self) -> int:
        entries = self.admin.request_log()
        return entries[-1]["id"] if entries else 0


def google_env(
    hub_env: dict[str, str], sandbox_url: str, port: int, client_id: str, client_secret: str
) -> dict[str, str]:
    return {
        **hub_env,
        "SYNCHUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SYNCHUB_CONNECTORS": "google_contacts",
        "SYNCHUB_LOG_LEVEL": "INFO",
        "SYNCHUB_GOOGLE__CLIENT_ID": client_id,
        "SYNCHUB_GOOGLE__CLIENT_SECRET": client_secret,
        "SYNCHUB_GOOGLE__BASE_URL": sandbox_url,
        "SYNCHUB_GOOGLE_CONTACTS__PAGE_SIZE": str(PAGE_SIZE),
        "SYNCHUB_GOOGLE_CONTACTS__APP_REQUESTS_PER_MINUTE": "60000",
        "SYNCHUB_GOOGLE_CONTACTS__CONNECTION_REQUESTS_PER_MINUTE": "60000",
        "SYNCHUB_CELERY__TASK_TIME_LIMIT": "20",
        "SYNCHUB_CELERY__TASK_SOFT_TIME_LIMIT": "15",
        "SYNCHUB_CELERY__SYNC_TIME_BUDGET": "5",
        "SYNCHUB_CELERY__MAX_COUNTDOWN": "5",
        "SYNCHUB_CELERY__RETRY_BASE_SECONDS": "0.5",
        "SYNCHUB_CELERY__VISIBILITY_TIMEOUT": "30",
        "SYNCHUB_CELERY__RUN_LOCK_SECONDS": "5",
        "SYNCHUB_CELERY__UNACKED_RESTORE_INTERVAL": "1",
        "SYNCHUB_CELERY__UNACKED_RESTORE_THROTTLE": "1",
    }


@contextmanager
def running_google_hub(
    hub_env: dict[str, str],
    sandbox_url: str,
    admin: SandboxAdmin,
    jwt_secret: str,
    overrides: dict[str, str],
    beat: bool = False,
    hub_class: type[GoogleHub] = GoogleHub,
) -> Iterator[GoogleHub]:
    """A hub wired to the sandbox for a whole package: its API in this process, a real worker on every queue and,
    if asked, beat; each costs seconds to start and stop, so a package shares one."""
    port = free_port()
    client_id, client_secret = f"synchub-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    admin.register_client(client_id, client_secret, [f"http://127.0.0.1:{port}/oauth/google/callback"])
    env = {**google_env(hub_env, sandbox_url, port, client_id, client_secret), **overrides}
    settings = settings_from_env(env)
    engine = make_engine(settings.database_url)
    processes = [Worker(env, queues="webhooks,sync,maintenance", concurrency=2).start()]
    if beat:
        processes.append(Beat(env).start())
    try:
        with LiveServer(create_app(settings, engine), port=port) as server:
            yield hub_class(
                server.url, env, settings, admin, client_id, client_secret, engine, session_factory(engine), jwt_secret
            )
    finally:
        for process in processes:
            process.stop(signal.SIGKILL)  # nothing to finish: a graceful stop waits seconds for held countdowns
        engine.dispose()


@pytest.fixture(scope="module")
def google_hub_factory(
    hub_env: dict[str, str], sandbox_url: str, admin: SandboxAdmin, jwt_secret: str
) -> Iterator[Callable[..., GoogleHub]]:
    """Start a hub (API in this process, workers as processes) wired to the sandbox."""
    servers: list[LiveServer] = []
    engines: list[Engine] = []

    def start(**overrides: str) -> GoogleHub:
        port = free_port()
        client_id, client_secret = f"synchub-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
        admin.register_client(client_id, client_secret, [f"http://127.0.0.1:{port}/oauth/google/callback"])
        env = {**google_env(hub_env, sandbox_url, port, client_id, client_secret), **overrides}
        settings = settings_from_env(env)
        engine = make_engine(settings.database_url)
        engines.append(engine)
        server = LiveServer(create_app(settings, engine), port=port).__enter__()
        servers.append(server)
        return GoogleHub(
            server.url, env, settings, admin, client_id, client_secret, engine, session_factory(engine), jwt_secret
        )

    yield start
    for server in servers:
        server.__exit__(None, None, None)
    for engine in engines:
        engine.dispose()


@pytest.fixture(scope="module")
def google_hub(google_hub_factory: Callable[..., GoogleHub]) -> Iterator[GoogleHub]:
    hub = google_hub_factory()
    worker = Worker(hub.env, queues="sync,maintenance", concurrency=1).start()
    yield hub
    worker.stop()
