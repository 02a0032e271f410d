"""Requesting a sync: at most one active run per stream (connection, capability, resource), whoever asks and
however often."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
import redis
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from core.db import session_factory, transaction
from core.models import Connection, ConnectionStatus, utcnow
from sync.models import RunStatus, SyncRun
from sync.runtime import Runtime
from sync.wiring import build_engine
from tests.conftest import settings_from_env, wait_for

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


def blocked(engine: Engine) -> bool:
    """Whether some session of this database waits on a row lock."""
    with engine.connect() as db:
        waiting = db.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar()
    return bool(waiting)


def test_a_request_for_a_change_the_starting_run_reads_asks_for_no_follow_up(
    hub_env: dict[str, str], engine: Engine
) -> None:
    """A notification received before its run started needs no run after it, even when its request waits on the
    run's start (which locks the run's row and stamps `started_at` before committing); one received after the
    start, or a request without a time ("sync now"), gets exactly one follow-up."""
    settings = settings_from_env(
        {
            **hub_env,
            "SYNCHUB_CONNECTORS": "google_contacts",
            "SYNCHUB_GOOGLE__CLIENT_ID": "f",
            "SYNCHUB_GOOGLE__CLIENT_SECRET": "s",
        }
    )
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        connection = Connection(
            workspace_id="ws-follow",
            user_id="u",
            auth_provider="google",
            provider_account_id=f"sub-{uuid.uuid4().hex[:6]}",
            granted_scopes=[CONTACTS],
            capabilities=["contacts"],
        )
        session.add(connection)
    sync = build_engine(Runtime(settings, engine, sessions, redis.Redis.from_url(settings.redis_url)))
    run_id = sync.request(connection.id, "contacts", "manual")
    assert run_id is not None
    received = utcnow()
    with ThreadPoolExecutor(1) as pool:
        with transaction(sessions) as starting:  # what the worker's start does, held open
            run = starting.get_one(SyncRun, run_id, with_for_update=True)
            run.move_to(RunStatus.RUNNING)
            starting.flush()
            waiting = pool.submit(sync.request, connection.id, "contacts", "webhook", changed_at=received)
            wait_for(lambda: blocked(engine), what="the request waiting on the run's row")
            assert not waiting.done()
        assert waiting.result(timeout=30) == run_id
    with sessions() as session:
        assert session.get_one(SyncRun, run_id).follow_up is False, "the run started after the change arrived"
    assert sync.request(connection.id, "contacts", "webhook", changed_at=utcnow()) == run_id
    with sessions() as session:
        assert session.get_one(SyncRun, run_id).follow_up is True, "a change after the start: one run after it"
