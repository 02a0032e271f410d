"""Per-process resources for workers: settings, engine, session factory and Redis, built once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, session_factory
from core.redis import redis_client
from core.settings import Settings, get_settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis

    @classmethod
    def build(cls, settings: Settings, **engine_options: Any) -> Runtime:
        """A database engine, sessions and Redis client for these settings."""
        engine = make_engine(settings.database_url, **engine_options)
        return cls(settings, engine, session_factory(engine), redis_client(settings.redis_url))


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    return Runtime.build(get_settings())
