"""The migrations build exactly the models' schema, on PostgreSQL and on the embedded SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from core.db import make_engine
from hub.database import alembic_config, upgrade
from migrations import target_metadata


def drift(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, target_metadata()))


def test_postgresql_schema_matches_models(engine: Engine) -> None:
    assert engine.dialect.name == "postgresql"
    assert drift(engine) == []


def test_sqlite_upgrade_downgrade_upgrade_without_drift(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'hub.sqlite'}")
    upgrade(engine)
    assert drift(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert {"connections", "credentials", "checkpoints", "sync_runs", "audit_log"} <= tables
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    config = alembic_config(str(engine.url))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert drift(engine) == []
    engine.dispose()


@pytest.mark.parametrize("name", ["connections", "credentials", "sync_runs"])
def test_foreign_keys_cascade_on_sqlite(tmp_path: Path, name: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fk.sqlite'}")
    upgrade(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    if name != "connections":
        assert any(fk["options"].get("ondelete") == "CASCADE" for fk in inspect(engine).get_foreign_keys(name))
    engine.dispose()
