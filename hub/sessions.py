"""Browser sessions, kept in Redis: the cookie holds only a random id, Redis the user, workspace and CSRF token."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import redis

from core.identity import Principal
from core.settings import Settings

PREFIX = "synchub:session:"
DEMO_USER, DEMO_WORKSPACE = "demo-user", "demo-workspace"  # whom a dev hub's /dev/sign-in signs in


@dataclass(frozen=True)
class BrowserSession:
    user_id: str
    workspace_id: str
    csrf_token: str
    expires_at: int
    switch_to: dict[str, str] | None = None  # a sign-in waiting on the "Which account?" page: user, workspace, next

    @property
    def principal(self) -> Principal:
        return Principal(user_id=self.user_id, workspace_id=self.workspace_id, expires_at=self.expires_at)

    def is_of(self, principal: Principal) -> bool:
        return (self.user_id, self.workspace_id) == (principal.user_id, principal.workspace_id)


def _key(session_id: str) -> str:
    """Redis keys are the id's SHA-256: whoever reads Redis cannot use what they read as a cookie."""
    return PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def lifetime_seconds(settings: Settings) -> int:
    return max(1, int(settings.identity.session_hours * 3600))


def start(store: redis.Redis, settings: Settings, principal: Principal) -> str:
    """A new session for `principal`; returns the id the cookie carries."""
    session_id = secrets.token_urlsafe(32)
    ttl = lifetime_seconds(settings)
    record = BrowserSession(
        principal.user_id, principal.workspace_id, secrets.token_urlsafe(32), int(time.time()) + ttl
    )
    store.set(_key(session_id), json.dumps(asdict(record)), ex=ttl)
    return session_id


def read(store: redis.Redis, session_id: str | None) -> BrowserSession | None:
    if not session_id:
        return None
    raw = store.get(_key(session_id))
    if raw is None:
        return None
    return BrowserSession(**json.loads(raw))


def hold_switch(store: redis.Redis, session_id: str, session: BrowserSession, switch_to: dict[str, str] | None) -> None:
    """Remember a sign-in as someone else until the user says which account to go on with (None: forget it)."""
    ttl = store.ttl(_key(session_id))
    if ttl > 0:
        record = {**asdict(session), "switch_to": switch_to}
        store.set(_key(session_id), json.dumps(record), ex=ttl)


def end(store: redis.Redis, session_id: str | None) -> None:
    if session_id:
        store.delete(_key(session_id))


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def dev_signin_enabled(settings: Settings) -> bool:
    """`/dev/sign-in` signs anyone in as the demo user: only on a loopback hub whose tokens it can sign (HS256)."""
    identity = settings.identity
    host = urlsplit(settings.public_url).hostname or ""
    return identity.dev_signin and identity.jwt_algorithm == "HS256" and host.lower() in LOOPBACK_HOSTS
