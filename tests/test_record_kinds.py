"""Record kinds: every record table carries the same provenance, and a full pass deletes by diff only within its
own (connection, resource)."""

from __future__ import annotations

import uuid

from sqlalchemy import UniqueConstraint, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.holdings import Role, declared
from core.models import Connection
from crm.kinds import kinds
from crm.records import Contact
from crm.sink import Owner
from migrations import target_metadata

PROVENANCE = {
    "workspace_id",
    "connection_id",
    "provider",
    "resource",
    "external_id",
    "full_pass_id",
    "created_at",
    "updated_at",
}


def test_every_record_table_carries_provenance_and_is_unique_by_connection_resource_external_id() -> None:
    tables = {kind.table.name: kind.table for kind in kinds().values()}
    records = {
        name
        for name, found in declared(target_metadata()).items()
        if found.role == Role.RECORDS and found.parent is None
    }
    assert records == set(tables), "every record table belongs to a record kind"
    for table in tables.values():
        assert set(table.c.keys()) >= PROVENANCE, table.name
        assert not table.c.resource.nullable, "NULLs are distinct in a unique index: '' means no resource"
        keys = [tuple(c.columns.keys()) for c in table.constraints if isinstance(c, UniqueConstraint)]
        assert ("connection_id", "resource", "external_id") in keys, table.name


def test_deletion_by_diff_stays_within_its_resource(sessions: sessionmaker[Session]) -> None:
    contact = kinds()["contact"]
    with transaction(sessions) as session:
        connection = Connection(
            workspace_id="ws-kinds", user_id="u", auth_provider="google", provider_account_id=uuid.uuid4().hex
        )
        session.add(connection)
        session.flush()
        first, second = Owner.of(connection, str(uuid.uuid4())), Owner.of(connection, str(uuid.uuid4()))
        for owner in (first, second):
            contact.sink(session, owner).apply([Contact("people/1"), Contact("people/2")], [], "pass-0", None)
    with transaction(sessions) as session:
        sink = contact.sink(session, first)
        counts = sink.apply([Contact("people/2")], [], "pass-1", None)
        assert (counts.created, counts.updated, counts.deleted) == (0, 0, 0)
        assert sink.delete_unseen("pass-1") == 1
    with sessions() as session:
        table = contact.table
        left = session.execute(
            select(table.c.resource, table.c.external_id).where(table.c.connection_id == connection.id)
        ).all()
    assert sorted(left) == sorted(
        [(first.resource, "people/2"), (second.resource, "people/1"), (second.resource, "people/2")]
    )
