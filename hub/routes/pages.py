"""The settings page and the actions its forms post."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from celery import Celery
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
from hub.resources import choose, chooser_of, list_resources
from hub.views import connection_view
from oauth.providers import FORM_PROVIDERS, PROVIDERS, display_name
from sync import channels, resources
from sync.engine import SyncEngine

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
        {
            **connection_view(session, settings, row),
            "choosers": choosers(session, settings, row),
            "provider_name": display_name(row.auth_provider),
            "reconnect_prompt": FORM_PROVIDERS[row.auth_provider].reconnect_prompt
            if row.auth_provider in FORM_PROVIDERS
            else None,
        }
        for row in mine(session, user)
    ]
    providers = [
        {"slug": name, "label": f"Connect {config.display_name}"}
        for name, config in PROVIDERS.items()
        if capabilities_of(settings, name)
    ] + [
        {"slug": name, "label": form.title} for name, form in FORM_PROVIDERS.items() if capabilities_of(settings, name)
    ]
    return HTMLResponse(
        render("settings.html", user=user, csrf_token=browser.csrf_token, connections=connections, providers=providers)
    )


@router.post("/connections/{connection_id}/disconnect", response_class=RedirectResponse)
def disconnect_from_page(connection_id: uuid.UUID, browser: PageAction, sync_engine: SyncEngineDep) -> Response:
    user = browser.principal
    disconnect(sync_engine, connection_id, user.user_id, user.workspace_id, delete_data=False)
    return RedirectResponse("/", status_code=303)


@router.get("/connections/{connection_id}/capabilities/{capability}/resources", response_class=HTMLResponse)
def resources_page(
    connection_id: uuid.UUID, capability: str, browser: PageSession, sync_engine: SyncEngineDep
) -> HTMLResponse:
    """The chooser: the capability's resources, refreshed from the provider, a checkbox each."""
    user = browser.principal
    listing = list_resources(sync_engine, connection_id, capability, (user.workspace_id, user.user_id))
    connection = chooser_of(sync_engine, connection_id, capability, (user.workspace_id, user.user_id))
    found = sync_engine.capability(connection, capability)
    noun = found[1].resource_noun if found else "resources"
    return HTMLResponse(
        render(
            "resources.html",
            csrf_token=browser.csrf_token,
            connection=connection,
            listing=listing,
            noun=noun,
            display_name=found[1].display_name if found else capability,
        )
    )


@router.post("/connections/{connection_id}/capabilities/{capability}/resources", response_class=RedirectResponse)
@router.post("/connections/{connection_id}/resources/{capability}", response_class=RedirectResponse)
async def choose_from_page(
    connection_id: uuid.UUID,
    capability: str,
    request: Request,
    browser: PageAction,
    sync_engine: SyncEngineDep,
    celery: CeleryDep,
) -> Response:
    """Save the chooser: select each ticked resource that was not selected, deselect each unticked one that was
    (keeping its records)."""
    user = browser.principal
    owner = (user.workspace_id, user.user_id)
    ticked = set((await request.form()).getlist("resource"))
    await run_in_threadpool(save_choice, sync_engine, celery, connection_id, capability, ticked, owner)
    return RedirectResponse("/", status_code=303)


def save_choice(
    sync_engine: SyncEngine,
    celery: Celery,
    connection_id: uuid.UUID,
    capability: str,
    ticked: set[str],
    owner: tuple[str, str],
) -> None:
    connection = chooser_of(sync_engine, connection_id, capability, owner)
    with sync_engine.sessions() as session:
        rows = [(row.key, row.selected) for row in resources.listed(session, connection.id, capability)]
    for key, selected in rows:
        if (key in ticked) != selected:
            choose(sync_engine, celery, connection.id, capability, uuid.UUID(key), key in ticked, False, owner)


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
