"""FastAPI dependencies: the database session, Redis, settings, the sync engine, Celery and the signed-in user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from core.identity import IdentityError, Principal, verify_token
from core.settings import Settings
from sync.engine import SyncEngine


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


def current_user(request: Request, settings: SettingsDep) -> Principal:
    """The user from `Authorization: Bearer` (API callers) or the session cookie (browsers)."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    token = (
        credentials
        if scheme.lower() == "bearer" and credentials
        else request.cookies.get(settings.identity.cookie_name)
    )
    if not token:
        raise NotSignedIn("no session: open synchub from the CRM, or send Authorization: Bearer")
    try:
        return verify_token(token, settings.identity)
    except IdentityError as exc:
        raise NotSignedIn(str(exc)) from exc


CurrentUser = Annotated[Principal, Depends(current_user)]
