"""Start-up checks every long-running entry point passes before serving: schema at head, key ring complete."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.settings import Settings
from hub.database import alembic_config
from token_vault.vault import check_key_ids, key_ring


class StartupError(Exception):
    """The process must not start; the message says why in one line."""


def check_schema(engine: Engine) -> None:
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise StartupError(f"the database is at migration {current or 'none'}, not {head}: run `synchub db upgrade`")


def check_startup(settings: Settings, engine: Engine) -> None:
    """Raise StartupError unless the schema is current and every stored credential can be opened."""
    try:
        check_schema(engine)
        with Session(engine) as session:
            check_key_ids(session, key_ring(settings.vault))
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(str(exc).splitlines()[0]) from exc
