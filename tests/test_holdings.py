"""The holdings registry knows every table, and disconnect and retention erase what it lists, table by table."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.db import Base, transaction
from core.holdings import Owner, Role, UndeclaredTables, check_database, declared, holding
from core.models import AuditEvent, audit_workspace
from migrations import target_metadata


def held_rows(session: Session, connection_id: uuid.UUID) -> dict[str, int]:
    """Rows each connection-owned table holds for one connection, read through the registry itself."""
    metadata = target_metadata()
    counts: dict[str, int] = {}
    for name, found in declared(metadata).items():
        if found.owner != Owner.CONNECTION:
            continue
        table = metadata.tables[name]
        if found.parent is not None:
            parent = metadata.tables[found.parent]
            link = next(fk for fk in table.foreign_keys if fk.column.table is parent)
            key = declared(metadata)[found.parent].key
            assert key is not None
            where = link.parent.in_(select(link.column).where(parent.c[key] == connection_id))
        else:
            assert found.key is not None
            where = table.c[found.key] == connection_id
        counts[name] = session.scalar(select(func.count()).select_from(table).where(where)) or 0
    return counts


def by_role(counts: dict[str, int], role: Role) -> dict[str, int]:
    holdings = declared(target_metadata())
    return {name: n for name, n in counts.items() if holdings[name].role == role}


def test_every_table_of_the_schema_declares_its_holdings() -> None:
    holdings = declared(target_metadata())
    assert set(holdings) == set(target_metadata().tables)
    for name, found in holdings.items():
        assert found.owner == Owner.NOBODY or found.key or found.parent, name
        if found.parent is not None:
            table, parent = Base.metadata.tables[name], Base.metadata.tables[found.parent]
            assert any(fk.column.table is parent for fk in table.foreign_keys), name


def test_a_table_without_declared_holdings_is_refused() -> None:
    metadata = MetaData()
    Table("declared", metadata, Column("id", Integer, primary_key=True), **holding(Owner.USER, Role.HISTORY, key="id"))
    Table("forgotten", metadata, Column("id", Integer, primary_key=True))
    with pytest.raises(UndeclaredTables, match="forgotten"):
        declared(metadata)
    with pytest.raises(ValueError, match="reason"):
        holding(Owner.NOBODY, Role.NONE)


def test_erase_refuses_a_database_table_this_process_does_not_know(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        check_database(session, target_metadata())
        session.execute(text("CREATE TABLE crm_unknown_kind (id integer primary key)"))
        with pytest.raises(UndeclaredTables, match="crm_unknown_kind"):
            check_database(session, target_metadata())
        session.rollback()


def test_an_audit_entry_needs_no_connection(sessions: sessionmaker[Session]) -> None:
    action = f"user.forgotten.{uuid.uuid4().hex[:6]}"
    with transaction(sessions) as session:
        audit_workspace(session, "ws-audit", "service", action, subject="user-9")
    with sessions() as session:
        entry = session.scalars(select(AuditEvent).where(AuditEvent.action == action)).one()
    assert (entry.workspace_id, entry.connection_id, entry.detail) == ("ws-audit", None, {"subject": "user-9"})
