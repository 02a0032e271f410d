"""The resources inside a connection's capabilities: the provider's listing as last seen, which ones sync, and
stopping one resource's stream when it is deselected or gone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from connectors.base import Capability, Resource
from core.models import Connection, utcnow
from sync import checkpoints
from sync.models import ACTIVE_STATUSES, NO_RESOURCE, ConnectionResource, RunStatus, Schedule, SyncRun

ACTIVE = [status.value for status in ACTIVE_STATUSES]
DESELECTED = "stopped: the resource was deselected"
GONE = "stopped: the provider no longer lists this resource"


def listed(session: Session, connection_id: uuid.UUID, capability: str) -> list[ConnectionResource]:
    """A capability's resources as the provider last listed them (gone ones included), by name."""
    return list(
        session.scalars(
            select(ConnectionResource)
            .where(ConnectionResource.connection_id == connection_id, ConnectionResource.capability == capability)
            .order_by(ConnectionResource.display_name, ConnectionResource.id)
        )
    )


def find(session: Session, connection_id: uuid.UUID, capability: str, key: str) -> ConnectionResource | None:
    """The resource `key` names, if it is one of this connection's capability's."""
    try:
        row = session.get(ConnectionResource, uuid.UUID(key))
    except ValueError:
        return None
    if row is None or row.connection_id != connection_id or row.capability != capability:
        return None
    return row


def syncs(row: ConnectionResource) -> bool:
    return row.selected and row.gone_at is None


def keys(session: Session, connection_id: uuid.UUID, capability: Capability) -> list[str]:
    """The streams a capability syncs, by resource key: `''` alone without resources, else each selected
    resource the provider still lists."""
    if capability.resources is None:
        return [NO_RESOURCE]
    return [
        str(found)
        for found in session.scalars(
            select(ConnectionResource.id)
            .where(
                ConnectionResource.connection_id == connection_id,
                ConnectionResource.capability == capability.name,
                ConnectionResource.selected,
                ConnectionResource.gone_at.is_(None),
            )
            .order_by(ConnectionResource.created_at, ConnectionResource.id)
        )
    ]


def reconcile(
    session: Session, connection_id: uuid.UUID, capability: str, found: Sequence[Resource]
) -> list[ConnectionResource]:
    """Record a fresh listing: new resources arrive unselected, known ones take their new name and detail (and
    are back if they were gone), and those the provider no longer lists are marked gone. Returns the newly gone."""
    now = utcnow()
    latest = {resource.external_id: resource for resource in found}
    if latest:
        rows = [
            {
                "id": uuid.uuid4(),
                "connection_id": connection_id,
                "capability": capability,
                "external_id": resource.external_id,
                "display_name": resource.display_name,
                "detail": dict(resource.detail),
                "selected": False,
                "created_at": now,
                "updated_at": now,
            }
            for resource in latest.values()
        ]
        upsert = insert(ConnectionResource).values(rows)
        session.execute(
            upsert.on_conflict_do_update(
                index_elements=["connection_id", "capability", "external_id"],
                set_={
                    "display_name": upsert.excluded.display_name,
                    "detail": upsert.excluded.detail,
                    "gone_at": None,
                    "updated_at": now,
                },
            )
        )
    gone = session.scalars(
        update(ConnectionResource)
        .where(
            ConnectionResource.connection_id == connection_id,
            ConnectionResource.capability == capability,
            ConnectionResource.external_id.not_in(list(latest)),
            ConnectionResource.gone_at.is_(None),
        )
        .values(gone_at=now, updated_at=now)
        .returning(ConnectionResource.id)
    ).all()
    return [session.get_one(ConnectionResource, resource_id, populate_existing=True) for resource_id in gone]


def stop(session: Session, connection: Connection, capability: str, key: str, reason: str) -> int:
    """Stop one stream: cancel its active runs (a page in flight is then not written), drop its schedule and its
    checkpoint (syncing it again starts with a full pass). Returns how many runs were cancelled."""
    runs = session.scalars(
        select(SyncRun)
        .where(
            SyncRun.connection_id == connection.id,
            SyncRun.capability == capability,
            SyncRun.resource == key,
            SyncRun.status.in_(ACTIVE),
        )
        .with_for_update()
    ).all()
    for run in runs:
        run.move_to(RunStatus.CANCELLED, reason)
    session.execute(
        delete(Schedule).where(
            Schedule.connection_id == connection.id, Schedule.capability == capability, Schedule.resource == key
        )
    )
    checkpoints.clear(session, connection, checkpoints.stream_key(capability, key))
    return len(runs)


# A selected resource the provider lists again gets its schedule back, due now, with the interval its owner chose
# for the capability's other resources.
LISTED_AGAIN = text(
    """
    INSERT INTO schedules (connection_id, capability, resource, next_run_at, interval_seconds, failures)
    SELECT r.connection_id, r.capability, r.id::text, :now,
           (SELECT s.interval_seconds FROM schedules s
            WHERE s.connection_id = r.connection_id AND s.capability = r.capability
              AND s.interval_seconds IS NOT NULL LIMIT 1), 0
    FROM connection_resources r
    WHERE r.connection_id = :connection_id AND r.capability = :capability AND r.selected AND r.gone_at IS NULL
    ON CONFLICT DO NOTHING
    """
)


def refresh(session: Session, connection: Connection, capability: str, found: Sequence[Resource]) -> None:
    """Take a fresh listing from the provider: each resource it no longer lists stops syncing at once, and each
    selected one it lists again is scheduled again."""
    for row in reconcile(session, connection.id, capability, found):
        stop(session, connection, capability, row.key, GONE)
    session.execute(LISTED_AGAIN, {"now": utcnow(), "connection_id": connection.id, "capability": capability})
