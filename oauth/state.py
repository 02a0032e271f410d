"""One-time OAuth `state` in Redis: bound to the user who started the flow, valid ten minutes, used once."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass

import redis

STATE_TTL_SECONDS = 600
PREFIX = "synchub:oauth:state:"


@dataclass(frozen=True)
class PendingGrant:
    provider: str
    workspace_id: str
    user_id: str
    capabilities: tuple[str, ...]
    scopes: tuple[str, ...]
    code_verifier: str
    reconnect: str | None = None


class StateStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def issue(self, pending: PendingGrant) -> str:
        state = secrets.token_urlsafe(32)
        self.redis.set(PREFIX + state, json.dumps(asdict(pending)), ex=STATE_TTL_SECONDS, nx=True)
        return state

    def take(self, state: str) -> PendingGrant | None:
        """Return and delete the pending grant; a second call with the same state returns None."""
        raw = self.redis.getdel(PREFIX + state)
        if raw is None:
            return None
        data = json.loads(raw)
        data["capabilities"], data["scopes"] = tuple(data["capabilities"]), tuple(data["scopes"])
        return PendingGrant(**data)
