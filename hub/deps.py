"""FastAPI dependencies: the database session, Redis, settings and the signed-in user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import redis
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from core.identity import IdentityError, Principal, verify_token
from core.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_redis(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]


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
