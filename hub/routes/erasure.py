"""The privacy API of erasure: a user erases themselves or one connection; the CRM's service forgets a person and
cancels or reactivates a workspace (the service token only: a user's token is refused with 403)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from hub import erasure
from hub.deps import CurrentUser, ServiceCaller, SettingsDep, SyncEngineDep
from hub.errors import Conflict, NotFound
from sync.retention import WindowEnded, cancel_workspace, reactivate_workspace

router = APIRouter(prefix="/api/v1", tags=["privacy"])


class ForgetIn(BaseModel):
    email: str = Field(min_length=3, max_length=320, description="The address of the person to forget.")


@router.delete("/privacy/me")
def erase_me(user: CurrentUser, sync_engine: SyncEngineDep) -> dict[str, Any]:
    """Erase the signed-in user's integration data in their workspace: every connection's grant revoked (unless
    another connection uses the same grant), Pages unsubscribed, channels stopped, every row deleted."""
    return erasure.erase_user(sync_engine, user.workspace_id, user.user_id)


@router.delete("/privacy/connections/{connection_id}")
def erase_my_connection(connection_id: uuid.UUID, user: CurrentUser, sync_engine: SyncEngineDep) -> dict[str, Any]:
    """Erase one of the signed-in user's connections as `DELETE /privacy/me` erases them all."""
    return erasure.erase_connection(sync_engine, user.workspace_id, user.user_id, connection_id)


@router.post("/workspaces/{workspace_id}/privacy/forget", dependencies=[ServiceCaller])
def forget(workspace_id: str, body: ForgetIn, sync_engine: SyncEngineDep) -> dict[str, Any]:
    """Delete a person from every synced record of the workspace; their address goes on its suppression list (a
    keyed hash), so later syncs skip records that carry it and count them as suppressed."""
    try:
        return erasure.forget(sync_engine, workspace_id, body.email)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.post("/workspaces/{workspace_id}/cancel", dependencies=[ServiceCaller])
def cancel(workspace_id: str, sync_engine: SyncEngineDep, settings: SettingsDep) -> dict[str, Any]:
    """Start the retention clock: the workspace's connections pause now, its data is deleted when the retention
    period ends, unless the cancellation is reversed before."""
    return cancel_workspace(sync_engine.sessions, workspace_id, settings.retention_days)


@router.delete("/workspaces/{workspace_id}/cancel", dependencies=[ServiceCaller])
def reactivate(workspace_id: str, sync_engine: SyncEngineDep, settings: SettingsDep) -> dict[str, Any]:
    """Reverse a cancellation inside the retention period: nothing is deleted and the paused connections resume."""
    try:
        return reactivate_workspace(sync_engine.sessions, workspace_id, settings.retention_days)
    except LookupError as exc:
        raise NotFound(f"a cancellation of workspace {workspace_id}") from exc
    except WindowEnded as exc:
        raise Conflict(str(exc)) from exc
