"""Per-process resources for workers: settings, engine, session factory and Redis, built once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    settings = get_settings()
    engine = make_engine(settings.database_url)
    return Runtime(settings, engine, session_factory(engine), redis_client(settings.redis_url))
