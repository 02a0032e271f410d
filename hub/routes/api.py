"""The JSON API the CRM builds on: connections, their runs and schedules (the records are `routes.records`)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from core.models import Sharing
from core.settings import MAX_POLL_SECONDS, MIN_POLL_SECONDS
from hub.connections import disconnect, mine, owned, pause_or_resume, remove, request_syncs, set_interval, set_sharing
from hub.deps import CeleryDep, CurrentUser, SessionDep, SessionsDep, SettingsDep, SyncEngineDep
from hub.errors import NotFound
from hub.ratelimits import SyncLimit
from hub.resources import choose, choose_parts, list_parts, list_resources
from hub.views import connection_view

router = APIRouter(prefix="/api/v1")


class ScheduleIn(BaseModel):
    interval_seconds: int | None = Field(
        ge=MIN_POLL_SECONDS,
        le=MAX_POLL_SECONDS,
        description="Seconds between polls, 300 to 86400; null returns to the deployment's interval.",
    )


@router.get("/connections", tags=["connections"])
def list_connections(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    return {"connections": [connection_view(session, settings, row) for row in mine(session, user)]}


@router.get("/connections/{connection_id}", tags=["connections"])
def get_connection(
    connection_id: uuid.UUID, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    return connection_view(session, settings, owned(session, connection_id, user.workspace_id, user.user_id))


@router.delete("/connections/{connection_id}", tags=["connections"])
def delete_connection(
    connection_id: uuid.UUID, user: CurrentUser, sync_engine: SyncEngineDep, delete_data: bool = False
) -> dict[str, Any]:
    return disconnect(sync_engine, connection_id, user.user_id, user.workspace_id, delete_data)


@router.post("/connections/{connection_id}/remove", tags=["connections"])
def remove_connection(connection_id: uuid.UUID, user: CurrentUser, sessions: SessionsDep) -> dict[str, Any]:
    """Take a disconnected connection off the list, erasing whatever was kept of it (its records and sync
    history). A connection that is not disconnected answers 409: disconnect it first."""
    return remove(sessions, connection_id, (user.workspace_id, user.user_id))


@router.post("/connections/{connection_id}/sync", tags=["connections"], dependencies=[SyncLimit])
def sync_now(
    connection_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    sync_engine: SyncEngineDep,
    celery: CeleryDep,
    capability: str | None = None,
) -> dict[str, Any]:
    connection = owned(session, connection_id, user.workspace_id, user.user_id)
    if capability is not None and capability not in connection.capabilities:
        raise NotFound(f"capability {capability} of connection {connection_id}")
    names = [capability] if capability else list(connection.capabilities)
    return {"runs": request_syncs(sync_engine, celery, connection.id, names, trigger="manual")}


@router.post("/connections/{connection_id}/pause", tags=["connections"])
def pause(connection_id: uuid.UUID, user: CurrentUser, sync_engine: SyncEngineDep, celery: CeleryDep) -> dict[str, Any]:
    owner = (user.workspace_id, user.user_id)
    return pause_or_resume(sync_engine, celery, connection_id, True, user.user_id, owner)


@router.post("/connections/{connection_id}/resume", tags=["connections"])
def resume(
    connection_id: uuid.UUID, user: CurrentUser, sync_engine: SyncEngineDep, celery: CeleryDep
) -> dict[str, Any]:
    owner = (user.workspace_id, user.user_id)
    return pause_or_resume(sync_engine, celery, connection_id, False, user.user_id, owner)


@router.put("/connections/{connection_id}/schedule/{capability}", tags=["connections"])
def put_schedule(
    connection_id: uuid.UUID,
    capability: str,
    body: ScheduleIn,
    user: CurrentUser,
    settings: SettingsDep,
    sessions: SessionsDep,
) -> dict[str, Any]:
    owner = (user.workspace_id, user.user_id)
    return set_interval(settings, sessions, connection_id, capability, body.interval_seconds, owner)


class SharingIn(BaseModel):
    sharing: Sharing = Field(
        description="Who reads the connection's records: `owner` (only you) or `workspace` (everyone in it). "
        "Reading only: pausing, syncing and disconnecting stay yours."
    )


@router.put("/connections/{connection_id}/sharing", tags=["connections"])
def put_sharing(connection_id: uuid.UUID, body: SharingIn, user: CurrentUser, sessions: SessionsDep) -> dict[str, Any]:
    owner = (user.workspace_id, user.user_id)
    return {"id": str(connection_id), "sharing": set_sharing(sessions, connection_id, body.sharing, owner)}


class ChoiceIn(BaseModel):
    selected: bool = Field(description="Sync this resource (true) or stop syncing it (false).")
    delete_data: bool = Field(
        default=False, description="When deselecting: delete the records it brought in (they are kept otherwise)."
    )


class PartsIn(BaseModel):
    parts: list[str] | None = Field(
        description="The parts to take within the resource (a Page's form ids); null or every one: all of "
        "them, including those added later.",
        max_length=1000,
    )


@router.get("/connections/{connection_id}/capabilities/{capability}/resources", tags=["connections"])
def get_resources(
    connection_id: uuid.UUID, capability: str, user: CurrentUser, sync_engine: SyncEngineDep, celery: CeleryDep
) -> dict[str, Any]:
    """The capability's resources (calendars, Pages), refreshed from the provider: each with whether it is
    selected and whether the provider still lists it."""
    return list_resources(sync_engine, connection_id, capability, (user.workspace_id, user.user_id), celery)


@router.put("/connections/{connection_id}/capabilities/{capability}/resources/{resource_id}", tags=["connections"])
def put_resource(
    connection_id: uuid.UUID,
    capability: str,
    resource_id: uuid.UUID,
    body: ChoiceIn,
    user: CurrentUser,
    sync_engine: SyncEngineDep,
    celery: CeleryDep,
) -> dict[str, Any]:
    owner = (user.workspace_id, user.user_id)
    return choose(sync_engine, celery, connection_id, capability, resource_id, body.selected, body.delete_data, owner)


@router.get(
    "/connections/{connection_id}/capabilities/{capability}/resources/{resource_id}/parts", tags=["connections"]
)
def get_parts(
    connection_id: uuid.UUID, capability: str, resource_id: uuid.UUID, user: CurrentUser, sync_engine: SyncEngineDep
) -> dict[str, Any]:
    """What a selected resource holds that it may be narrowed to (a Page's forms), listed by the provider,
    each with whether it is taken."""
    return list_parts(sync_engine, connection_id, capability, resource_id, (user.workspace_id, user.user_id))


@router.put(
    "/connections/{connection_id}/capabilities/{capability}/resources/{resource_id}/parts", tags=["connections"]
)
def put_parts(
    connection_id: uuid.UUID,
    capability: str,
    resource_id: uuid.UUID,
    body: PartsIn,
    user: CurrentUser,
    sync_engine: SyncEngineDep,
    celery: CeleryDep,
) -> dict[str, Any]:
    """Narrow a selected resource to some of its parts (a Page to some of its forms: what the others bring is
    recorded as ignored), or take all of them again with null."""
    owner = (user.workspace_id, user.user_id)
    parts = None if body.parts is None else set(body.parts)
    return choose_parts(sync_engine, celery, connection_id, capability, resource_id, parts, owner)
