"""Sandbox tests: one sandbox process for the session, reset before each test, every served body validated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from googleapiclient.discovery import Resource, build

from sandbox.admin_client import SandboxAdmin
from sandbox.process import running_sandbox
from tests.sandbox.facebook import APP_ID, APP_SECRET, Facebook, Graph
from tests.sandbox.facebook import REDIRECT_URI as FB_REDIRECT_URI
from tests.sandbox.schemas import BodyValidator

SEED = 20261124
CLIENT_ID, CLIENT_SECRET = "hub-test.apps.googleusercontent.com", "GOCSPX-test-secret"
REDIRECT_URI = "http://127.0.0.1:8000/oauth/google/callback"
CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"
CALENDAR = "https://www.googleapis.com/auth/calendar.readonly"
CALENDAR_LIST = "https://www.googleapis.com/auth/calendar.calendarlist.readonly"
CALENDAR_EVENTS = "https://www.googleapis.com/auth/calendar.events.readonly"
EMAIL = "https://www.googleapis.com/auth/userinfo.email"
PROFILE = "https://www.googleapis.com/auth/userinfo.profile"
ALL_FIELDS = "names,emailAddresses,phoneNumbers,organizations,memberships,metadata"
ADA, GRACE = "ada@sandbox.test", "grace@sandbox.test"


@dataclass(frozen=True)
class Sandbox:
    url: str
    admin: SandboxAdmin
    validator: BodyValidator

    @property
    def authorize_url(self) -> str:
        return self.url + "/o/oauth2/v2/auth"

    @property
    def token_url(self) -> str:
        return self.url + "/token"


class ValidatingHttp(httplib2.Http):  # type: ignore[misc]
    """httplib2 transport for google-api-python-client that validates each body it receives."""

    def __init__(self, validator: BodyValidator) -> None:
        super().__init__(timeout=10)
        self.validator = validator

    def request(self, uri: str, *args: Any, **kwargs: Any) -> tuple[httplib2.Response, bytes]:
        response, content = super().request(uri, *args, **kwargs)
        self.validator.check(urlsplit(uri).path, response.status, response.get("content-type", ""), content)
        return response, content


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[Sandbox]:
    with running_sandbox(seed=SEED) as url, SandboxAdmin(url) as admin:
        yield Sandbox(url, admin, BodyValidator())


@pytest.fixture
def sandbox(sandbox_session: Sandbox) -> Sandbox:
    sandbox_session.admin.reset()
    sandbox_session.admin.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    return sandbox_session


@pytest.fixture
def admin(sandbox: Sandbox) -> SandboxAdmin:
    return sandbox.admin


def validating_hook(validator: BodyValidator) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        response.read()
        content_type = response.headers.get("content-type", "")
        validator.check(response.request.url.path, response.status_code, content_type, response.content)

    return check


@pytest.fixture
def browser(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """The user's browser: plain httpx, redirects not followed, so the test sees where Google sends it."""
    hooks = {"response": [validating_hook(sandbox.validator)]}
    with httpx.Client(base_url=sandbox.url, follow_redirects=False, event_hooks=hooks, timeout=10) as client:
        yield client


@pytest.fixture
def oauth(sandbox: Sandbox) -> Iterator[Callable[..., OAuth2Client]]:
    """Authlib's httpx OAuth2Client for the registered test app, with PKCE S256 and validated responses."""
    clients: list[OAuth2Client] = []

    def make(scope: str = f"openid email profile {CONTACTS}") -> OAuth2Client:
        client = OAuth2Client(
            CLIENT_ID,
            CLIENT_SECRET,
            scope=scope,
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
            revocation_endpoint_auth_method="client_secret_post",
            event_hooks={"response": [validating_hook(sandbox.validator)]},
            timeout=10,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def people_service(sandbox: Sandbox, credentials: google.oauth2.credentials.Credentials) -> Resource:
    """google-api-python-client's People service pointed at the sandbox, as the hub builds it.

    Credentials without a refresh token are used as they are: a 401 reaches the caller instead of a refresh.
    """
    refresh_on = google_auth_httplib2.transport.DEFAULT_REFRESH_STATUS_CODES if credentials.refresh_token else ()
    http = google_auth_httplib2.AuthorizedHttp(
        credentials, http=ValidatingHttp(sandbox.validator), refresh_status_codes=refresh_on
    )
    return build("people", "v1", http=http, static_discovery=True, client_options={"api_endpoint": sandbox.url + "/"})


@pytest.fixture
def people(sandbox: Sandbox) -> Callable[[str], Resource]:
    """The People `connections` resource for a bare access token."""

    def make(token: str) -> Resource:
        return people_service(sandbox, google.oauth2.credentials.Credentials(token)).people().connections()

    return make


@pytest.fixture
def ada_token(admin: SandboxAdmin) -> str:
    token: str = admin.mint_tokens(ADA, CLIENT_ID, ["openid", "email", CONTACTS])["access_token"]
    return token


def list_all(
    connections: Resource, page_size: int = 100, fields: str = ALL_FIELDS, **params: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every person over all pages, and the page bodies."""
    pages: list[dict[str, Any]] = []
    request = connections.list(resourceName="people/me", personFields=fields, pageSize=page_size, **params)
    while request is not None:
        pages.append(request.execute(num_retries=0))
        request = connections.list_next(request, pages[-1])
    return [person for page in pages for person in page.get("connections", [])], pages


@pytest.fixture
def facebook(sandbox: Sandbox) -> Facebook:
    """The fake Facebook after a reset: seeded users (Dana Demo, Sam Sample) and the test app registered."""
    sandbox.admin.facebook.register_app(APP_ID, APP_SECRET, [FB_REDIRECT_URI], name="Synchub Test")
    return Facebook(sandbox.url, sandbox.admin, Graph(sandbox.url))


def calendar_service(sandbox: Sandbox, token: str) -> Resource:
    """google-api-python-client's Calendar v3 service at the sandbox, built as the hub builds it (static discovery);
    the endpoint carries the service path, since `api_endpoint` replaces rootUrl and servicePath both."""
    http = google_auth_httplib2.AuthorizedHttp(
        google.oauth2.credentials.Credentials(token), http=ValidatingHttp(sandbox.validator), refresh_status_codes=()
    )
    endpoint = sandbox.url + "/calendar/v3/"
    return build("calendar", "v3", http=http, static_discovery=True, client_options={"api_endpoint": endpoint})


@pytest.fixture
def calendar(sandbox: Sandbox) -> Callable[[str], Resource]:
    """The Calendar service for a bare access token."""
    return lambda token: calendar_service(sandbox, token)


@pytest.fixture
def ada_calendar(admin: SandboxAdmin, calendar: Callable[[str], Resource]) -> Resource:
    """Ada's Calendar, with the two scopes a calendar connector asks for."""
    token = admin.mint_tokens(ADA, CLIENT_ID, ["openid", "email", CALENDAR_LIST, CALENDAR_EVENTS])["access_token"]
    return calendar(token)
