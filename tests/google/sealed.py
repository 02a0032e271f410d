"""A Google Contacts connection written as connecting leaves it, for benchmarks and tests that need many of them
without a consent each: the connection row, its tokens sealed in the vault and, if asked, its schedule due now."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.models import Connection, utcnow
from sync.models import Schedule
from token_vault.vault import Vault

CONTACTS_READONLY = "https://www.googleapis.com/auth/contacts.readonly"


def sealed_contacts_connection(
    session: Session,
    vault: Vault,
    tokens: dict[str, Any],
    *,
    workspace: str,
    user: str,
    account: str,
    valid_for: timedelta = timedelta(hours=1),
    scheduled: bool = False,
) -> Connection:
    """`tokens` as the sandbox mints them (`access_token`, `refresh_token`), for the read-only contacts scope."""
    connection = Connection(
        workspace_id=workspace,
        user_id=user,
        auth_provider="google",
        provider_account_id=account,
        granted_scopes=[CONTACTS_READONLY],
        capabilities=["contacts"],
    )
    session.add(connection)
    session.flush()
    vault.store(session, connection, "access_token", tokens["access_token"], utcnow() + valid_for)
    vault.store(session, connection, "refresh_token", tokens["refresh_token"])
    if scheduled:
        session.add(Schedule(connection_id=connection.id, capability="contacts", next_run_at=utcnow()))
    return connection
