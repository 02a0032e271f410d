"""The privacy API the CRM builds on: the signed-in user's export and audit log, and a workspace's audit log for
the CRM's service token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from crm.kinds import BadCursor
from hub.audit import audit_page
from hub.deps import CurrentUser, ServiceCaller, SessionDep
from hub.export import Export

router = APIRouter(prefix="/api/v1", tags=["privacy"])


@router.get("/privacy/export")
def export(user: CurrentUser, request: Request) -> StreamingResponse:
    """Everything synchub holds of the signed-in user's integrations, as one JSON document, streamed."""
    state = request.app.state
    found = Export(state.engine, state.sessions, user.workspace_id, user.user_id, actor=user.user_id)
    found.check()
    headers = {"Content-Disposition": 'attachment; filename="synchub-export.json"', "Cache-Control": "no-store"}
    return StreamingResponse(found.chunks(), media_type="application/json", headers=headers)


@router.get("/audit")
def my_audit(
    user: CurrentUser,
    session: SessionDep,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The audit log of the signed-in user's connections and of their own actions, newest first."""
    try:
        return audit_page(session, user.workspace_id, user.user_id, cursor, limit)
    except BadCursor as exc:
        raise HTTPException(400, str(exc)) from exc


@router.get("/workspaces/{workspace_id}/audit", dependencies=[ServiceCaller])
def workspace_audit(
    workspace_id: str,
    session: SessionDep,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """A whole workspace's audit log, newest first: the CRM's service token only."""
    try:
        return audit_page(session, workspace_id, None, cursor, limit)
    except BadCursor as exc:
        raise HTTPException(400, str(exc)) from exc
