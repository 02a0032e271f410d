"""A hub with Google Contacts and Calendar on the sandbox, the service token set, and owed provider undo's retried
every second: API in this process, a real worker and beat. Helpers that read the whole schema, table by table."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import JSON, String, Table, Text, cast, func, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from typer.testing import CliRunner, Result

from core.identity import issue_token
from migrations import target_metadata
from sandbox.admin_client import SandboxAdmin
from tests.calendar.conftest import CALENDAR_ENV, CalendarHub
from tests.google.conftest import admin, running_google_hub, sandbox_url

__all__ = ["admin", "sandbox_url"]

SERVICE_TOKEN = secrets.token_urlsafe(32)
PRIVACY_ENV = {
    **CALENDAR_ENV,
    "SYNCHUB_PRIVACY__SERVICE_TOKEN": SERVICE_TOKEN,
    "SYNCHUB_PRIVACY__UNDO_SWEEP_SECONDS": "1",
    "SYNCHUB_PRIVACY__UNDO_RETRY_BASE_SECONDS": "1",
    "SYNCHUB_PRIVACY__UNDO_RETRY_MAX_SECONDS": "2",
}
OWNER_COLUMNS = ("connection_id", "user_id", "workspace_id")


@dataclass
class PrivacyHub(CalendarHub):
    def api(self, user: str, workspace: str) -> httpx.Client:
        token = issue_token(self.hub.jwt_secret, user, workspace, 3600)
        return httpx.Client(base_url=self.hub.url, timeout=60, headers={"Authorization": f"Bearer {token}"})

    def service(self) -> httpx.Client:
        return httpx.Client(base_url=self.hub.url, timeout=60, headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})

    def send(self, task: str) -> Any:
        from sync.celery_app import make_celery

        return make_celery(self.hub.settings).send_task(task, queue="maintenance").get(timeout=60)

    def rows_naming(
        self, *values: str, tables: set[str] | None = None, but_workspace: str | None = None
    ) -> dict[str, int]:
        """Rows of every table (or of `tables`) with a text or JSON column that contains one of `values`, any case;
        `but_workspace`: not counting the rows of that workspace."""
        found: dict[str, int] = {}
        with self.hub.sessions() as session:
            for table in target_metadata().sorted_tables:
                if tables is not None and table.name not in tables:
                    continue
                where = [
                    func.lower(cast(column, Text)).contains(value.lower())
                    for column in table.columns
                    if isinstance(column.type, String | Text | JSON | JSONB) or column.name.endswith("_id")
                    for value in values
                ]
                if where:
                    query = select(func.count()).select_from(table).where(or_(*where))
                    if but_workspace is not None and "workspace_id" in table.c:
                        query = query.where(table.c.workspace_id != but_workspace)
                    count = session.scalar(query) or 0
                    if count:
                        found[table.name] = count
        return found

    def workspace_rows(self, workspace: str) -> dict[str, int]:
        """Rows per table that belong to the workspace: by its workspace column, or through a connection of it."""
        found: dict[str, int] = {}
        with self.hub.sessions() as session:
            connections = target_metadata().tables["connections"]
            theirs = select(connections.c.id).where(connections.c.workspace_id == workspace)
            for table in target_metadata().sorted_tables:
                if "workspace_id" in table.c:
                    where = table.c.workspace_id == workspace
                elif "connection_id" in table.c:
                    where = table.c.connection_id.in_(theirs)
                else:
                    continue
                count = session.scalar(select(func.count()).select_from(table).where(where)) or 0
                if count:
                    found[table.name] = count
        return found

    def cli(self, *args: str) -> Result:
        """`synchub ARGS` as an operator runs it, with the hub's environment (in this process: a new interpreter
        spends seconds importing what this one has)."""
        from hub.cli import app

        env = {name: None for name in os.environ if name.startswith("SYNCHUB_")}
        return CliRunner().invoke(app, list(args), env={**env, **self.hub.env}, catch_exceptions=False)

    def owned_rows(self, connection_ids: list[uuid.UUID], user: str, workspace: str) -> dict[str, int]:
        """Rows of the user's data in every table with a connection, user or workspace column, read from the
        schema itself (not the holdings registry): a connection's rows by its id, a user's by theirs, and a
        workspace's rows that name the user or a connection of theirs anywhere."""
        ids = [str(c) for c in connection_ids]
        found: dict[str, int] = {}
        with self.hub.sessions() as session:
            for table in target_metadata().sorted_tables:
                where = owner_clauses(table, ids, user)
                if "workspace_id" in table.c:
                    texts = [
                        func.lower(cast(c, Text)).contains(v.lower())
                        for c in table.columns
                        if isinstance(c.type, String | Text | JSON | JSONB)
                        for v in [*ids, user]
                    ]
                    where.append((table.c.workspace_id == workspace) & or_(*texts))
                if table.name == "connections":
                    where.append(cast(table.c.id, Text).in_(ids))
                if where:
                    count = session.scalar(select(func.count()).select_from(table).where(or_(*where))) or 0
                    if count:
                        found[table.name] = count
        return found


def owner_clauses(table: Table, ids: list[str], user: str) -> list[Any]:
    where: list[Any] = []
    if "connection_id" in table.c:
        where.append(cast(table.c.connection_id, Text).in_(ids))
    if "user_id" in table.c:
        where.append(table.c.user_id == user)
    return where


def tables_with_owner_columns() -> set[str]:
    return {t.name for t in target_metadata().sorted_tables if any(c in t.c for c in OWNER_COLUMNS)}


@pytest.fixture(scope="package")
def privacy(hub_env: dict[str, str], sandbox_url: str, admin: SandboxAdmin, jwt_secret: str) -> Iterator[PrivacyHub]:
    with running_google_hub(hub_env, sandbox_url, admin, jwt_secret, PRIVACY_ENV, beat=True) as hub:
        yield PrivacyHub(hub)
