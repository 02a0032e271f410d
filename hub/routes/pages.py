"""The settings page and the actions its forms post."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Literal

from celery import Celery
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from connectors.registry import capabilities_of, settings_of
from core.identity import Principal
from core.models import Connection, Sharing
from core.settings import Settings
from hub.connections import (
    disconnect,
    mine,
    owned,
    pause_or_resume,
    remove,
    request_syncs,
    set_interval,
    set_sharing,
)
from hub.deps import CeleryDep, PageAction, PageSession, SessionDep, SessionsDep, SettingsDep, SyncEngineDep
from hub.errors import Conflict, NotFound
from hub.pages import render
from hub.ratelimits import admit
from hub.resources import choose, choose_parts, chooser_of, list_parts, list_resources
from hub.views import connection_view
from oauth.providers import FORM_PROVIDERS, PROVIDERS, display_name
from sync import channels, resources
from sync.engine import SyncEngine

router = APIRouter(tags=["pages"], include_in_schema=False)  # the page's own forms are not the API


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


def banner(views: list[dict[str, Any]], connected: str | None) -> dict[str, Any] | None:
    """After connecting: what was connected, and what will sync (or waits for a choice, or was not granted)."""
    view = next((v for v in views if v["id"] == connected), None)
    if view is None:
        return None
    enabled = [c for c in view["capabilities"] if c["enabled"]]
    return {
        "account": view["account_email"] or "the account",
        "provider": view["provider_name"],
        "syncing": [
            c["display_name"].lower()
            for c in enabled
            if c["state"] == "ok" and (c["chooser"] is None or c["chooser"]["selected"])
        ],
        "waiting": [
            c["display_name"] for c in enabled if c["state"] == "ok" and c["chooser"] and not c["chooser"]["selected"]
        ],
        "not_granted": [c["display_name"].lower() for c in enabled if c["state"] == "grant_access"],
        "first": any(c["current_run"] for c in enabled),
    }


def page_view(session: Session, settings: Settings, row: Connection) -> dict[str, Any]:
    view = connection_view(session, settings, row)
    kept_until = row.disconnected_at + timedelta(days=settings.retention_days) if row.disconnected_at else None
    return {
        **view,
        "choosers": choosers(session, settings, row),
        "provider_name": display_name(row.auth_provider),
        "records_total": sum(view["records"].values()),
        "kept_until": kept_until,
    }


@router.get("/", response_class=HTMLResponse)
def settings_page(
    browser: PageSession, session: SessionDep, settings: SettingsDep, connected: str | None = None
) -> HTMLResponse:
    user = browser.principal
    connections = [page_view(session, settings, row) for row in mine(session, user)]
    providers = [
        {"slug": name, "label": f"Connect {config.display_name}"}
        for name, config in PROVIDERS.items()
        if capabilities_of(settings, name)
    ] + [
        {"slug": name, "label": form.title} for name, form in FORM_PROVIDERS.items() if capabilities_of(settings, name)
    ]
    return HTMLResponse(
        render(
            "settings.html",
            user=user,
            csrf_token=browser.csrf_token,
            connections=connections,
            providers=providers,
            banner=banner(connections, connected),
            intervals=INTERVALS,
        )
    )


@router.post("/connections/{connection_id}/capabilities/{capability}/sync", response_class=RedirectResponse)
def sync_from_page(
    connection_id: uuid.UUID,
    capability: str,
    request: Request,
    browser: PageAction,
    session: SessionDep,
    sync_engine: SyncEngineDep,
    celery: CeleryDep,
) -> Response:
    """The page's "Sync now" for one capability (the API's sync now, from the page's form)."""
    user = browser.principal
    admit(request, "sync", user)
    connection = owned(session, connection_id, user.workspace_id, user.user_id)
    if capability not in connection.capabilities:
        raise NotFound(f"capability {capability} of connection {connection_id}")
    session.close()
    request_syncs(sync_engine, celery, connection_id, [capability], trigger="manual")
    return RedirectResponse(f"/#connection-{connection_id}", status_code=303)


INTERVALS = (300, 900, 3600, 21600, 86400)
"""The page's choices of how often a capability syncs (the API takes any value in its range)."""


@router.post("/connections/{connection_id}/capabilities/{capability}/schedule", response_class=RedirectResponse)
def schedule_from_page(
    connection_id: uuid.UUID,
    capability: str,
    browser: PageAction,
    settings: SettingsDep,
    sessions: SessionsDep,
    interval: str = Form(""),
) -> Response:
    """How often a capability syncs: one of `INTERVALS`, or empty for the deployment's own."""
    seconds = int(interval) if interval.isdigit() else None
    if interval and seconds not in INTERVALS:
        raise Conflict("choose one of the offered intervals")
    user = browser.principal
    set_interval(settings, sessions, connection_id, capability, seconds, (user.workspace_id, user.user_id))
    return RedirectResponse(f"/#connection-{connection_id}", status_code=303)


@router.post("/connections/{connection_id}/sharing", response_class=RedirectResponse)
def sharing_from_page(
    connection_id: uuid.UUID, browser: PageAction, sessions: SessionsDep, sharing: str = Form(...)
) -> Response:
    """Who reads the account's records: only its owner, or everyone in the workspace."""
    try:
        chosen = Sharing(sharing)
    except ValueError as exc:
        raise Conflict("choose who can see the records: only you, or everyone in the workspace") from exc
    user = browser.principal
    set_sharing(sessions, connection_id, chosen, (user.workspace_id, user.user_id))
    return RedirectResponse(f"/#connection-{connection_id}", status_code=303)


@router.get("/connections/{connection_id}/disconnect", response_class=HTMLResponse)
def disconnect_page(
    connection_id: uuid.UUID, browser: PageSession, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The confirmation: keep the synced data (for the retention window) or delete it now."""
    user = browser.principal
    row = owned(session, connection_id, user.workspace_id, user.user_id)
    view = page_view(session, settings, row)
    return HTMLResponse(
        render(
            "disconnect.html",
            csrf_token=browser.csrf_token,
            c=view,
            retention_days=settings.retention_days,
        )
    )


@router.post("/connections/{connection_id}/disconnect", response_class=RedirectResponse)
def disconnect_from_page(
    connection_id: uuid.UUID, browser: PageAction, sync_engine: SyncEngineDep, data: str = Form("keep")
) -> Response:
    """The confirmation's answer: `data` is `keep` or `delete`."""
    if data not in ("keep", "delete"):
        raise Conflict("choose whether to keep or delete the synced data")
    user = browser.principal
    disconnect(sync_engine, connection_id, user.user_id, user.workspace_id, delete_data=data == "delete")
    return RedirectResponse(f"/#connection-{connection_id}", status_code=303)


@router.post("/connections/{connection_id}/remove", response_class=RedirectResponse)
def remove_from_page(connection_id: uuid.UUID, browser: PageAction, sync_engine: SyncEngineDep) -> Response:
    user = browser.principal
    remove(sync_engine.sessions, connection_id, (user.workspace_id, user.user_id))
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
    parts: dict[str, list[dict[str, Any]] | str] = {}
    if found is not None and found[1].parts is not None:
        for view in listing["resources"]:
            if view["selected"] and not view["gone"]:
                parts[view["id"]] = listed_parts(sync_engine, connection_id, capability, view["id"], user)
    return HTMLResponse(
        render(
            "resources.html",
            csrf_token=browser.csrf_token,
            connection=connection,
            listing=listing,
            noun=noun,
            parts=parts,
            part_noun=found[1].part_noun if found else "parts",
            display_name=found[1].display_name if found else capability,
        )
    )


def listed_parts(
    sync_engine: SyncEngine, connection_id: uuid.UUID, capability: str, key: str, user: Principal
) -> list[dict[str, Any]] | str:
    """A selected resource's parts for the chooser, or why they could not be listed."""
    try:
        found = list_parts(sync_engine, connection_id, capability, uuid.UUID(key), (user.workspace_id, user.user_id))
    except Conflict as exc:
        return str(exc)
    listed: list[dict[str, Any]] = found["parts"]
    return listed


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
    form = await request.form()
    ticked = {str(value) for value in form.getlist("resource")}
    narrowed = {str(key): {str(v) for v in form.getlist(f"part:{key}")} for key in form.getlist("parts_of")}
    await run_in_threadpool(save_choice, sync_engine, celery, connection_id, capability, ticked, owner, narrowed)
    return RedirectResponse("/", status_code=303)


def save_choice(
    sync_engine: SyncEngine,
    celery: Celery,
    connection_id: uuid.UUID,
    capability: str,
    ticked: set[str],
    owner: tuple[str, str],
    narrowed: dict[str, set[str]] | None = None,
) -> None:
    """Select and deselect as ticked; then each selected resource whose parts the page listed takes the parts
    ticked (all of them when none or every one is)."""
    connection = chooser_of(sync_engine, connection_id, capability, owner)
    with sync_engine.sessions() as session:
        rows = [(row.key, row.selected) for row in resources.listed(session, connection.id, capability)]
    for key, selected in rows:
        if (key in ticked) != selected:
            choose(sync_engine, celery, connection.id, capability, uuid.UUID(key), key in ticked, False, owner)
    for key, _ in rows:
        if key in ticked and narrowed is not None and key in narrowed:
            choose_parts(sync_engine, celery, connection.id, capability, uuid.UUID(key), narrowed[key], owner)


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
