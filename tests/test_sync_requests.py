"""Requesting a sync: at most one active run per stream (connection, capability, resource), whoever asks and
however often."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from core.db import session_factory, transaction
from core.models import Connection, ConnectionStatus
from sync.models import SyncRun
from sync.runtime import Runtime
from sync.wiring import build_engine
from tests.conftest import settings_from_env

CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"


def test_concurrent_requests_share_one_active_run(hub_env: dict[str, str], engine: Engine) -> None:
    settings = settings_from_env(
        {
            **hub_env,
            "SYNCHUB_CONNECTORS": "google_contacts",
            "SYNCHUB_GOOGLE__CLIENT_ID": "race",
            "SYNCHUB_GOOGLE__CLIENT_SECRET": "race-secret",
        }
    )
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        connection = Connection(
            workspace_id="ws-race",
            user_id="u",
            auth_provider="google",
            provider_account_id="sub-race",
            granted_scopes=[CONTACTS],
            capabilities=["contacts"],
        )
        gated = Connection(
            workspace_id="ws-race",
            user_id="u",
            auth_provider="google",
            provider_account_id="sub-gated",
            granted_scopes=["openid"],
            capabilities=["contacts"],
        )
        session.add_all([connection, gated])
    sync = build_engine(Runtime(settings, engine, sessions, redis.Redis.from_url(settings.redis_url)))
    barrier = Barrier(8)

    def ask(_: int) -> object:
        barrier.wait()
        return sync.request(connection.id, "contacts", "race")

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(ask, range(8)))
    assert len(ids) == 1 and None not in ids
    with sessions() as session:
        active = session.scalar(select(func.count()).where(SyncRun.connection_id == connection.id))
    assert active == 1

    assert sync.request(gated.id, "contacts", "manual") is None, "a capability without its scope is never queued"
    with transaction(sessions) as session:
        session.get_one(Connection, connection.id).move_to(ConnectionStatus.PAUSED)
        session.execute(SyncRun.__table__.delete().where(SyncRun.connection_id == connection.id))
    assert sync.request(connection.id, "contacts", "manual") is None, "a paused connection is never queued"


def test_no_resource_is_the_empty_string_so_the_one_active_run_index_holds(engine: Engine) -> None:
    """NULLs are distinct in a unique index: a NULL resource would let a second active run of a stream in."""
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        connection = Connection(
            workspace_id="ws-null", user_id="u", auth_provider="google", provider_account_id="sub-null"
        )
        session.add(connection)
    with transaction(sessions) as session:
        first = SyncRun(connection_id=connection.id, capability="contacts")
        session.add(first)
    assert first.resource == ""
    unnamed = {"id": uuid.uuid4(), "connection_id": connection.id, "capability": "events", "resource": None}
    with pytest.raises(IntegrityError, match='null value in column "resource"'), transaction(sessions) as session:
        session.execute(SyncRun.__table__.insert().values(unnamed))
    with pytest.raises(IntegrityError, match="uq_sync_runs_one_active"), transaction(sessions) as session:
        session.add(SyncRun(connection_id=connection.id, capability="contacts", resource=""))
    with transaction(sessions) as session:
        session.add(SyncRun(connection_id=connection.id, capability="contacts", resource=str(uuid.uuid4())))
    with sessions() as session:
        active = session.scalar(select(func.count()).where(SyncRun.connection_id == connection.id))
    assert active == 2, "one active run per stream: the connection's own, and one resource's"
