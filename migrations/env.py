"""Alembic environment: the URL comes from the caller's config or SYNCHUB_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from core.db import make_engine
from core.settings import normalise_database_url
from migrations import target_metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    existing = config.attributes.get("connection")
    if existing is not None:
        _run(existing)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        import os

        url = os.environ["SYNCHUB_DATABASE_URL"]
    engine = make_engine(normalise_database_url(url))
    with engine.begin() as connection:
        _run(connection)
    engine.dispose()


run_online()
