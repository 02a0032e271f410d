"""The settings page and the actions its forms post."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from connectors.registry import capabilities_of
from hub.connections import disconnect, mine, pause_or_resume
from hub.deps import CeleryDep, PageAction, PageSession, SessionDep, SettingsDep, SyncEngineDep
from hub.pages import render
from hub.views import connection_view
from oauth.providers import PROVIDERS

router = APIRouter(tags=["pages"])


@router.get("/", response_class=HTMLResponse)
def settings_page(browser: PageSession, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    user = browser.principal
    connections = [connection_view(session, settings, row) for row in mine(session, user)]
    providers = [
        {"slug": name, "name": config.display_name}
        for name, config in PROVIDERS.items()
        if capabilities_of(settings, name)
    ]
    return HTMLResponse(
        render("settings.html", user=user, csrf_token=browser.csrf_token, connections=connections, providers=providers)
    )


@router.post("/connections/{connection_id}/disconnect", response_class=RedirectResponse)
def disconnect_from_page(connection_id: uuid.UUID, browser: PageAction, sync_engine: SyncEngineDep) -> Response:
    user = browser.principal
    disconnect(sync_engine, connection_id, user.user_id, user.workspace_id, delete_data=False)
    return RedirectResponse("/", status_code=303)


@router.post("/connections/{connection_id}/{action}", response_class=RedirectResponse)
def pause_from_page(
    connection_id: uuid.UUID,
    action: Literal["pause", "resume"],
    browser: PageAction,
    sync_engine: SyncEngineDep,
    celery: CeleryDep,
) -> Response:
    user = browser.principal
    owner = (user.workspace_id, user.user_id)
    pause_or_resume(sync_engine, celery, connection_id, action == "pause", user.user_id, owner)
    return RedirectResponse("/", status_code=303)
