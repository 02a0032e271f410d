"""A disconnect that lands while a worker writes a page, or while a connector keeps a secret, leaves nothing behind:
the page waits for the disconnect or the disconnect for the page, never a mix."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_factory, transaction
from core.models import Connection
from core.settings import Settings
from crm.models import ContactRow, FullPassSeenRow
from hub.connections import disconnect
from sync.engine import SyncEngine
from sync.models import Checkpoint, RunStatus, SyncRun
from sync.runtime import Runtime
from sync.wiring import build_engine
from tests.conftest import wait_for
from tests.test_holdings import held_rows
from token_vault.credentials import ConnectionCredentials
from token_vault.fresh import FreshTokens, Inactive
from token_vault.vault import Vault, key_ring

WORKSPACE, USER = "ws-races", "racer"


def lock_waiters(sessions: sessionmaker[Session]) -> int:
    """Sessions of this database waiting on a lock right now."""
    with sessions() as session:
        waiting = session.scalar(
            text(
                "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
            )
        )
    return int(waiting or 0)


@pytest.fixture
def sync_engine(settings: Settings, engine: Engine, sessions: sessionmaker[Session], redis_url: str) -> SyncEngine:
    return build_engine(Runtime(settings, engine, sessions, redis.Redis.from_url(redis_url)))


@pytest.fixture
def connection_id(sessions: sessionmaker[Session]) -> uuid.UUID:
    with transaction(sessions) as session:
        connection = Connection(
            workspace_id=WORKSPACE,
            user_id=USER,
            auth_provider="google",
            provider_account_id=uuid.uuid4().hex,
            capabilities=["contacts"],
        )
        session.add(connection)
        session.flush()
        session.add(ContactRow(workspace_id=WORKSPACE, connection_id=connection.id, provider="google", external_id="a"))
        found = connection.id
    return found


def test_a_page_committed_during_a_delete_disconnect_is_erased_with_the_rest(
    sync_engine: SyncEngine, sessions: sessionmaker[Session], connection_id: uuid.UUID
) -> None:
    with transaction(sessions) as session:
        run = SyncRun(connection_id=connection_id, capability="contacts", status=RunStatus.RUNNING.value)
        session.add(run)
        session.flush()
        run_id = run.id
    holding = threading.Event()

    def worker_writes_a_page() -> None:  # as the engine commits a page: the run's lock first, then the page
        with transaction(sessions) as session:
            session.get_one(SyncRun, run_id, with_for_update=True)
            holding.set()
            wait_for(lambda: lock_waiters(sessions), timeout=10, what="the disconnect to wait on a lock")
            owner = dict(workspace_id=WORKSPACE, connection_id=connection_id, provider="google")
            session.add(ContactRow(**owner, external_id="b"))
            session.add(Checkpoint(connection_id=connection_id, stream="contacts", key_id=1, sealed=b"x" * 40))
            session.add(
                FullPassSeenRow(
                    connection_id=connection_id, record_table="crm_contacts", pass_id="p", external_ids=["a"]
                )
            )

    worker = threading.Thread(target=worker_writes_a_page)
    worker.start()
    assert holding.wait(10)
    answer = disconnect(sync_engine, connection_id, USER, WORKSPACE, delete_data=True)
    worker.join()
    assert answer["records_deleted"] == 2, "the page's contact was counted with the rest"
    with sessions() as session:
        assert session.get_one(SyncRun, run_id).status == RunStatus.CANCELLED.value
        held = held_rows(session, connection_id)
    assert {name: n for name, n in held.items() if n and name not in ("connections", "sync_runs")} == {}


def test_a_secret_kept_during_a_disconnect_is_refused_not_left_behind(
    sync_engine: SyncEngine,
    settings: Settings,
    sessions: sessionmaker[Session],
    engine: Engine,
    connection_id: uuid.UUID,
    redis_url: str,
) -> None:
    vault = Vault(key_ring(settings.vault))
    with transaction(sessions) as session:
        vault.store(session, session.get_one(Connection, connection_id), "secret:password", "app-password")
    erasing, kept = threading.Event(), threading.Event()

    def slow_erase(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("DELETE FROM credentials") and not erasing.is_set():
            erasing.set()  # the connector keeps a secret while the disconnect's erase is under way: it waits, or not
            wait_for(lambda: kept.is_set() or lock_waiters(sessions), timeout=10, what="the secret to be kept")

    event.listen(engine, "after_cursor_execute", slow_erase)
    try:
        leaving = threading.Thread(target=disconnect, args=(sync_engine, connection_id, USER, WORKSPACE, False))
        leaving.start()
        assert erasing.wait(10)
        fresh = FreshTokens(vault, session_factory(engine), redis.Redis.from_url(redis_url), refresher=None)
        try:
            with pytest.raises(Inactive):
                ConnectionCredentials(fresh, connection_id).keep("page:123", "page-token")
        finally:
            kept.set()
        leaving.join()
    finally:
        event.remove(engine, "after_cursor_execute", slow_erase)
    with sessions() as session:
        assert held_rows(session, connection_id)["credentials"] == 0
