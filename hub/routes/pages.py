"""The settings page and the actions its forms post."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from connectors.registry import capabilities_of, settings_of
from core.models import Connection
from core.settings import Settings
from hub.connections import disconnect, mine, pause_or_resume
from hub.deps import CeleryDep, PageAction, PageSession, SessionDep, SettingsDep, SyncEngineDep
from hub.pages import render
from hub.resources import choose
from hub.views import connection_view
from oauth.providers import PROVIDERS
from sync import channels, resources

router = APIRouter(tags=["pages"])


def choosers(session: Session, settings: Settings, connection: Connection) -> list[dict[str, Any]]:
    """The capabilities of a connection that list resources, each with the resources as last listed (the page
    does not call the provider; the chooser's API refreshes them) and whether pushes can reach the hub."""
    found = []
    for name, (spec, capability) in capabilities_of(settings, connection.auth_provider).items():
        if capability.resources is None or name not in connection.capabilities:
            continue
        rows = [row for row in resources.listed(session, connection.id, name) if row.gone_at is None]
        pushes = (
            spec.webhook is None
            or channels.address(
                settings, spec.slug, bool(getattr(settings_of(settings, spec), "push_allow_http", False))
            )
            is not None
        )
        found.append(
            {
                "name": name,
                "display_name": capability.display_name,
                "resources": [{"id": row.key, "name": row.display_name, "selected": row.selected} for row in rows],
                "polled_only": not pushes,
            }
        )
    return found


@router.get("/", response_class=HTMLResponse)
def settings_page(browser: PageSession, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    user = browser.principal
    connections = [
        {**connection_view(session, settings, row), "choosers": choosers(session, settings, row)}
        for row in mine(session, user)
    ]
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


@router.post("/connections/{connection_id}/resources/{capability}", response_class=RedirectResponse)
async def choose_from_page(
    connection_id: uuid.UUID,
    capability: str,
    request: Request,
    browser: PageAction,
    sync_engine: SyncEngineDep,
    celery: CeleryDep,
) -> Response:
    """The checkboxes of a capability's resources: each one ticked is selected, each one unticked deselected
    (its records kept)."""
    user = browser.principal
    owner = (user.workspace_id, user.user_id)
    ticked = {str(value) for value in (await request.form()).getlist("resource")}

    def apply() -> None:
        with sync_engine.sessions() as session:
            rows = [(row.id, row.selected) for row in resources.listed(session, connection_id, capability)]
        for resource_id, selected in rows:
            wanted = str(resource_id) in ticked
            if wanted != selected:
                choose(sync_engine, celery, connection_id, capability, resource_id, wanted, False, owner)

    await run_in_threadpool(apply)
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
