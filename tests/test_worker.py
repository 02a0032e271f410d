"""A real `synchub worker` process runs tasks from Redis against the test database."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import AuditEvent, Connection, ConnectionStatus, utcnow
from core.settings import Settings
from sync import checkpoints
from sync.celery_app import make_celery
from sync.checkpoints import Position
from sync.models import Checkpoint
from tests.conftest import Worker, wait_for
from tests.test_holdings import held_rows
from token_vault.models import SealedCredential
from token_vault.vault import Vault, key_ring


def test_worker_process_runs_a_task_with_database_and_redis(
    settings: Settings, worker_factory: Callable[..., Worker]
) -> None:
    worker = worker_factory(queues="maintenance", env={"SYNCHUB_LOG_LEVEL": "INFO"})
    client = make_celery(settings)
    sent = client.send_task("synchub.maintenance.ping")
    result = sent.get(timeout=60)
    assert result["database"] is True and result["redis"] is True
    assert result["pid"] != os.getpid()

    def logged_success() -> list[dict[str, Any]] | None:
        lines = [json.loads(line) for line in worker.output().splitlines()]  # no banner: every line is JSON
        return lines if any("succeeded" in line["message"] for line in lines) else None

    lines = wait_for(logged_success, timeout=10, what="the worker to log the task's success")
    assert any(line["message"].startswith("celery@") and line["message"].endswith(" ready.") for line in lines)
    done = next(line for line in lines if "succeeded" in line["message"])
    assert (done["task"], done["task_id"]) == ("synchub.maintenance.ping", sent.id)
    assert "database" not in done["message"], "Celery's line leaves the task's return value out"


def test_retention_erases_connections_disconnected_longer_than_90_days(
    settings: Settings, sessions: sessionmaker[Session], worker_factory: Callable[..., Worker]
) -> None:
    vault = Vault(key_ring(settings.vault))
    now = utcnow()
    with transaction(sessions) as session:
        created = {}
        for label, days in (("expired", 91), ("recent", 89), ("active", None)):
            connection = Connection(
                workspace_id="ws-retention", user_id="u-r", auth_provider="google", provider_account_id=label
            )
            session.add(connection)
            session.flush()
            if days is not None:
                connection.move_to(ConnectionStatus.DISCONNECTED)
                connection.disconnected_at = now - timedelta(days=days)
            vault.store(session, connection, "refresh_token", f"1//{label}")
            checkpoints.save(session, vault.ring, connection, "contacts", Position({"sync_token": label}))
            created[label] = connection.id

    worker_factory(queues="maintenance")
    outcome = make_celery(settings).send_task("synchub.maintenance.enforce_retention").get(timeout=60)
    assert outcome["connections_erased"] == 1

    with sessions() as session:
        assert session.get(Connection, created["expired"]) is None
        assert session.get(Connection, created["recent"]) is not None
        assert session.get(Connection, created["active"]) is not None
        leftovers = session.scalar(
            select(func.count())
            .select_from(SealedCredential)
            .where(SealedCredential.connection_id == created["expired"])
        )
        assert leftovers == 0
        assert session.get(Checkpoint, (created["expired"], "contacts")) is None
        assert not any(held_rows(session, created["expired"]).values())
        assert held_rows(session, created["recent"])["credentials"] == 1
        audit = session.scalars(select(AuditEvent).where(AuditEvent.connection_id == created["expired"])).one()
        assert audit.action == "connection.erased_by_retention" and "1//expired" not in str(audit.detail)
