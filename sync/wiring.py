"""Builds the engine and the vault's fresh tokens from settings, for workers, the CLI and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from core.models import Connection
from crm import suppression
from oauth.client import client_for
from oauth.config import TokenSet
from sync.engine import SyncEngine
from sync.runtime import Runtime, runtime
from token_vault.fresh import FreshTokens
from token_vault.vault import Vault, key_ring


@dataclass(frozen=True)
class ProviderRefresher:
    """Refreshes a connection's token at its auth provider's token endpoint."""

    rt: Runtime

    def __call__(self, connection: Connection, refresh_token: str) -> TokenSet:
        return client_for(self.rt.settings, connection.auth_provider).refresh(refresh_token)


def build_engine(rt: Runtime) -> SyncEngine:
    suppression.configure(rt.settings)  # every sink of this process checks the suppression list with these keys
    ring = key_ring(rt.settings.vault)
    vault = rt.settings.vault
    fresh = FreshTokens(
        Vault(ring),
        rt.sessions,
        rt.redis,
        ProviderRefresher(rt),
        margin=timedelta(seconds=vault.refresh_margin_seconds),
        lock_ttl=vault.refresh_lock_seconds,
    )
    return SyncEngine(rt.settings, rt.sessions, rt.redis, ring, fresh)


@lru_cache(maxsize=1)
def engine() -> SyncEngine:
    return build_engine(runtime())
