"""The migrations build exactly the models' schema, and take it down and up again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from core.db import make_engine
from hub.database import alembic_config, scratch_database, upgrade
from migrations import target_metadata


def drift(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, target_metadata()))


def test_postgresql_schema_matches_models(engine: Engine) -> None:
    assert drift(engine) == []


def test_upgrade_downgrade_upgrade_without_drift(pg_admin_url: str) -> None:
    with scratch_database(pg_admin_url, "synchub_migrations") as url:
        engine = make_engine(url)
        assert drift(engine) == []
        tables = set(inspect(engine).get_table_names())
        assert {"connections", "credentials", "checkpoints", "sync_runs", "audit_log"} <= tables
        config = alembic_config(url)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert drift(engine) == []
        engine.dispose()


@pytest.mark.parametrize("name", ["credentials", "sync_runs"])
def test_rows_of_a_connection_go_with_it(engine: Engine, name: str) -> None:
    assert any(fk["options"].get("ondelete") == "CASCADE" for fk in inspect(engine).get_foreign_keys(name))
