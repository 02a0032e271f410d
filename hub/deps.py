"""FastAPI dependencies: the database session, Redis, settings, the sync engine, Celery and the signed-in user."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlsplit

import redis
from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from core.identity import IdentityError, Principal, verify_token
from core.settings import Settings
from hub import sessions
from hub.sessions import BrowserSession
from sync.engine import SyncEngine

READS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD, CSRF_HEADER = "csrf_token", "x-csrf-token"


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_redis(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


def get_sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


def get_sync_engine(request: Request) -> SyncEngine:
    engine: SyncEngine = request.app.state.sync_engine
    return engine


def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
SyncEngineDep = Annotated[SyncEngine, Depends(get_sync_engine)]
CeleryDep = Annotated[Celery, Depends(get_celery)]


class NotSignedIn(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CrossSiteRefused(Exception):
    """A page action without this site's `Origin` or the session's CSRF token: refused with 403, nothing done."""


def bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def browser_session(request: Request) -> BrowserSession | None:
    settings: Settings = request.app.state.settings
    return sessions.read(request.app.state.redis, request.cookies.get(settings.identity.cookie_name))


def current_user(request: Request, settings: SettingsDep) -> Principal:
    """API callers: the CRM's token as `Authorization: Bearer`; the browser's session cookie only for reads (the
    page's live progress), never for a state-changing call."""
    token = bearer(request)
    if token is not None:
        try:
            return verify_token(token, settings.identity)
        except IdentityError as exc:
            raise NotSignedIn(str(exc)) from exc
    if request.cookies.get(settings.identity.cookie_name) and request.method not in READS:
        raise NotSignedIn("a state-changing API call needs Authorization: Bearer; the session cookie is not enough")
    found = browser_session(request) if request.method in READS else None
    if found is None:
        raise NotSignedIn("no session: open synchub from the CRM, or send Authorization: Bearer")
    return found.principal


class ServiceCallsOff(Exception):
    """`SYNCHUB_PRIVACY__SERVICE_TOKEN` is unset: the workspace-wide calls do not exist (404)."""


class NotTheService(Exception):
    """A workspace-wide call without the service token (a user's token included): refused with 403."""


def service_caller(request: Request, settings: SettingsDep) -> None:
    """The CRM's backend acting for a whole workspace: `Authorization: Bearer` with the service token, compared in
    constant time. A user's token, or a session cookie, is refused."""
    expected = settings.privacy.service_token
    if expected is None:
        raise ServiceCallsOff()
    token = bearer(request)
    if token is None:
        raise NotSignedIn("a workspace-wide call needs Authorization: Bearer with the service token")
    if not secrets.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise NotTheService("this call needs the CRM's service token; a user's token cannot make it")


ServiceCaller = Depends(service_caller)


def page_session(request: Request) -> BrowserSession:
    """Pages: the browser's session cookie, and nothing else."""
    found = browser_session(request)
    if found is None:
        raise NotSignedIn("you are not signed in to synchub: open it from the CRM")
    return found


def origin_of(url: str) -> str:
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{scheme}://{host}{port}"


async def page_action(request: Request, session: Annotated[BrowserSession, Depends(page_session)]) -> BrowserSession:
    """A page's POST: the session, sent from this site's own page (`Origin`) with the session's CSRF token (the
    form's `csrf_token` field, or an `X-CSRF-Token` header)."""
    settings: Settings = request.app.state.settings
    origin = request.headers.get("origin")
    if not origin or origin_of(origin) != origin_of(settings.public_url):
        raise CrossSiteRefused("this request did not come from synchub's own page (Origin); nothing was done")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not sent or not secrets.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise CrossSiteRefused("this form is out of date or came from another site (CSRF token); nothing was done")
    return session


CurrentUser = Annotated[Principal, Depends(current_user)]
PageSession = Annotated[BrowserSession, Depends(page_session)]
PageAction = Annotated[BrowserSession, Depends(page_action)]
