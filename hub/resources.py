"""The resource chooser for the user's own connections: list a capability's resources, select or deselect one."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from core.models import Connection
from core.settings import Settings
from hub.connections import owned, request_syncs
from hub.errors import Conflict, NotFound
from hub.views import last_run, run_view, schedule_view
from sync import chooser, resources
from sync.engine import SyncEngine
from sync.models import ConnectionResource, Schedule


def chooser_of(
    sync_engine: SyncEngine, connection_id: uuid.UUID, capability: str, owner: tuple[str, str]
) -> Connection:
    """The user's own connection, if `capability` is enabled on it and lists resources; else NotFound."""
    with sync_engine.sessions() as session:
        connection = owned(session, connection_id, *owner)
        session.expunge(connection)
    found = sync_engine.capability(connection, capability)
    if found is None or found[1].resources is None or capability not in connection.capabilities:
        raise NotFound(f"resources of capability {capability} of connection {connection_id}")
    return connection


def resource_view(
    session: Session, settings: Settings, connection: Connection, row: ConnectionResource
) -> dict[str, Any]:
    plan = session.get(Schedule, (connection.id, row.capability, row.key))
    syncing = resources.syncs(row)
    return {
        "id": row.key,
        "name": row.display_name,
        "selected": row.selected,
        "parts": row.parts,
        "gone": row.gone_at is not None,
        "last_run": run_view(last_run(session, connection.id, row.capability, row.key)),
        "schedule": schedule_view(settings, connection, row.capability, plan) if syncing else None,
    }


def list_resources(
    sync_engine: SyncEngine,
    connection_id: uuid.UUID,
    capability: str,
    owner: tuple[str, str],
    celery: Celery | None = None,
) -> dict[str, Any]:
    """The chooser opens: the list is refreshed from the provider first; a resource selected by default as it is
    first listed (a primary calendar) starts syncing at once."""
    connection = chooser_of(sync_engine, connection_id, capability, owner)
    listing = chooser.refresh(sync_engine, connection.id, capability)
    if celery is not None:
        for key in listing.defaulted:
            request_syncs(sync_engine, celery, connection.id, [capability], trigger="selected", resource=key)
    with sync_engine.sessions() as session:
        views = [resource_view(session, sync_engine.settings, connection, row) for row in listing.resources]
    return {"capability": capability, "refreshed": listing.refreshed, "error": listing.error, "resources": views}


def choose(
    sync_engine: SyncEngine,
    celery: Celery,
    connection_id: uuid.UUID,
    capability: str,
    resource_id: uuid.UUID,
    selected: bool,
    delete_data: bool,
    owner: tuple[str, str],
) -> dict[str, Any]:
    """Select a resource (and sync it at once) or deselect it, keeping or deleting its records."""
    connection = chooser_of(sync_engine, connection_id, capability, owner)
    key = str(resource_id)
    with sync_engine.sessions() as session:
        if resources.find(session, connection.id, capability, key) is None:
            raise NotFound(f"resource {resource_id} of capability {capability} of connection {connection_id}")
    answer: dict[str, Any] = {"id": key, "selected": selected}
    if selected:
        try:
            answer["changed"] = chooser.select(sync_engine, connection.id, capability, key, owner[1])
        except chooser.NotChoosable as exc:
            raise Conflict(f"resource {resource_id} cannot be selected: {exc}") from exc
        runs = request_syncs(sync_engine, celery, connection.id, [capability], trigger="selected", resource=key)
        answer["run"] = next(iter(runs.values()), None)
    else:
        done = chooser.deselect(sync_engine, connection.id, capability, key, owner[1], delete_data)
        answer |= {
            "changed": done.changed,
            "runs_stopped": done.runs_stopped,
            "records_deleted": done.records_deleted,
            "undone_at_provider": done.undone,
        }
    return answer


def _chosen_resource(
    sync_engine: SyncEngine, connection_id: uuid.UUID, capability: str, resource_id: uuid.UUID, owner: tuple[str, str]
) -> tuple[Connection, ConnectionResource]:
    connection = chooser_of(sync_engine, connection_id, capability, owner)
    with sync_engine.sessions() as session:
        row = resources.find(session, connection.id, capability, str(resource_id))
        if row is None:
            raise NotFound(f"resource {resource_id} of capability {capability} of connection {connection_id}")
        session.expunge(row)
    return connection, row


def list_parts(
    sync_engine: SyncEngine, connection_id: uuid.UUID, capability: str, resource_id: uuid.UUID, owner: tuple[str, str]
) -> dict[str, Any]:
    """What a selected resource holds that it may be narrowed to (a Page's forms), each with whether it is taken."""
    connection, row = _chosen_resource(sync_engine, connection_id, capability, resource_id, owner)
    try:
        listed = chooser.parts_of(sync_engine, connection.id, capability, row.key)
    except chooser.NotChoosable as exc:
        raise Conflict(f"resource {resource_id} cannot be narrowed: {exc}") from exc
    taken = None if row.parts is None else set(row.parts)
    return {
        "id": row.key,
        "all": taken is None,
        "parts": [
            {"id": part.external_id, "name": part.display_name, "chosen": taken is None or part.external_id in taken}
            for part in listed
        ],
    }


def choose_parts(
    sync_engine: SyncEngine,
    celery: Celery,
    connection_id: uuid.UUID,
    capability: str,
    resource_id: uuid.UUID,
    parts: set[str] | None,
    owner: tuple[str, str],
) -> dict[str, Any]:
    """Narrow a selected resource to some of its parts (None: all), and sync it at once, so that a part now
    taken is read from as far back as a new resource would be."""
    connection, row = _chosen_resource(sync_engine, connection_id, capability, resource_id, owner)
    try:
        changed = chooser.choose_parts(sync_engine, connection.id, capability, row.key, parts, owner[1])
    except chooser.NotChoosable as exc:
        raise Conflict(f"resource {resource_id} cannot be narrowed so: {exc}") from exc
    answer: dict[str, Any] = {"id": row.key, "changed": changed}
    if changed:
        runs = request_syncs(sync_engine, celery, connection.id, [capability], trigger="selected", resource=row.key)
        answer["run"] = next(iter(runs.values()), None)
    with sync_engine.sessions() as session:
        current = resources.find(session, connection.id, capability, row.key)
        answer["parts"] = current.parts if current is not None else None
    return answer
