"""The FastAPI application: health, browser sessions, the settings page and the JSON API."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from connectors.registry import capabilities_of
from core.db import make_engine, session_factory
from core.identity import IdentityError, Principal, verify_token
from core.models import Connection
from core.redis import redis_client
from core.settings import MAX_POLL_SECONDS, MIN_POLL_SECONDS, Settings
from hub import connect, errors
from hub.connections import disconnect, owned, pause_or_resume, request_syncs, set_interval
from hub.deps import CurrentUser, NotSignedIn, RedisDep, SessionDep, SettingsDep
from hub.pages import render
from hub.records import contacts_page
from hub.views import connection_view
from oauth.providers import PROVIDERS
from sync.celery_app import make_celery
from sync.runtime import Runtime
from sync.wiring import build_engine


def safe_next(target: str) -> str:
    """Only a path on this site may follow sign-in: no scheme, no host, no `//` or `\\` tricks."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(ch in target for ch in "\r\n\\"):
        raise ValueError("next must be a relative path on this site, such as /")
    return target


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    app = FastAPI(title="synchub", version="0.1.0", docs_url="/docs", openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.database_url)
    app.state.sessions = session_factory(app.state.engine)
    app.state.redis = redis_client(settings.redis_url)
    app.state.sync_engine = build_engine(Runtime(settings, app.state.engine, app.state.sessions, app.state.redis))
    app.state.celery = make_celery(settings)
    errors.install(app)
    app.include_router(connect.router)

    @app.get("/healthz", tags=["health"])
    def healthz(session: SessionDep, redis: RedisDep) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            session.execute(text("select 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        healthy = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ok" if healthy else "unhealthy", **checks}, status_code=200 if healthy else 503)

    @app.get("/session", tags=["identity"], response_class=RedirectResponse)
    def start_session(settings: SettingsDep, token: str = Query(...), next: str = Query("/")) -> Response:
        try:
            target = safe_next(next)
        except ValueError as exc:
            return HTMLResponse(render("message.html", title="bad link", detail=str(exc)), status_code=400)
        try:
            principal = verify_token(token, settings.identity)
        except IdentityError as exc:
            raise NotSignedIn(f"this sign-in link is not valid: {exc}") from exc
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            settings.identity.cookie_name,
            token,
            httponly=True,
            samesite="lax",
            secure=settings.public_url.startswith("https://"),
            max_age=max(0, principal.expires_at - int(time.time())),
            path="/",
        )
        return response

    @app.get("/", response_class=HTMLResponse, tags=["pages"])
    def settings_page(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
        connections = [connection_view(session, settings, row) for row in _mine(session, user)]
        providers = [
            {"slug": name, "name": config.display_name}
            for name, config in PROVIDERS.items()
            if capabilities_of(settings, name)
        ]
        return HTMLResponse(render("settings.html", user=user, connections=connections, providers=providers))

    @app.post("/connections/{connection_id}/disconnect", response_class=RedirectResponse, tags=["pages"])
    def disconnect_from_page(connection_id: uuid.UUID, user: CurrentUser, settings: SettingsDep) -> Response:
        disconnect(settings, app.state.sessions, connection_id, user.user_id, user.workspace_id, delete_data=False)
        return RedirectResponse("/", status_code=303)

    @app.get("/api/v1/me", tags=["identity"])
    def me(user: CurrentUser) -> dict[str, str]:
        return {"user_id": user.user_id, "workspace_id": user.workspace_id}

    @app.get("/api/v1/connections", tags=["connections"])
    def list_connections(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
        return {"connections": [connection_view(session, settings, row) for row in _mine(session, user)]}

    @app.get("/api/v1/connections/{connection_id}", tags=["connections"])
    def get_connection(
        connection_id: uuid.UUID, user: CurrentUser, session: SessionDep, settings: SettingsDep
    ) -> dict[str, Any]:
        return connection_view(session, settings, owned(session, connection_id, user.workspace_id, user.user_id))

    @app.delete("/api/v1/connections/{connection_id}", tags=["connections"])
    def delete_connection(
        connection_id: uuid.UUID, user: CurrentUser, settings: SettingsDep, delete_data: bool = False
    ) -> dict[str, Any]:
        return disconnect(settings, app.state.sessions, connection_id, user.user_id, user.workspace_id, delete_data)

    @app.post("/api/v1/connections/{connection_id}/sync", tags=["connections"])
    def sync_now(
        connection_id: uuid.UUID, user: CurrentUser, session: SessionDep, capability: str | None = None
    ) -> dict[str, Any]:
        connection = owned(session, connection_id, user.workspace_id, user.user_id)
        names = [capability] if capability else list(connection.capabilities)
        return {"runs": request_syncs(app.state.sync_engine, app.state.celery, connection.id, names, trigger="manual")}

    @app.post("/api/v1/connections/{connection_id}/pause", tags=["connections"])
    def pause(connection_id: uuid.UUID, user: CurrentUser) -> dict[str, Any]:
        owner = (user.workspace_id, user.user_id)
        return pause_or_resume(app.state.sync_engine, app.state.celery, connection_id, True, user.user_id, owner)

    @app.post("/api/v1/connections/{connection_id}/resume", tags=["connections"])
    def resume(connection_id: uuid.UUID, user: CurrentUser) -> dict[str, Any]:
        owner = (user.workspace_id, user.user_id)
        return pause_or_resume(app.state.sync_engine, app.state.celery, connection_id, False, user.user_id, owner)

    @app.put("/api/v1/connections/{connection_id}/schedule/{capability}", tags=["connections"])
    def put_schedule(
        connection_id: uuid.UUID, capability: str, body: ScheduleIn, user: CurrentUser, settings: SettingsDep
    ) -> dict[str, Any]:
        owner = (user.workspace_id, user.user_id)
        return set_interval(settings, app.state.sessions, connection_id, capability, body.interval_seconds, owner)

    @app.post("/connections/{connection_id}/{action}", response_class=RedirectResponse, tags=["pages"])
    def pause_from_page(connection_id: uuid.UUID, action: Literal["pause", "resume"], user: CurrentUser) -> Response:
        owner = (user.workspace_id, user.user_id)
        pause_or_resume(app.state.sync_engine, app.state.celery, connection_id, action == "pause", user.user_id, owner)
        return RedirectResponse("/", status_code=303)

    @app.get("/api/v1/contacts", tags=["records"])
    def list_contacts(
        user: CurrentUser,
        session: SessionDep,
        cursor: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        connection_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        return contacts_page(session, user.workspace_id, cursor, limit, connection_id)

    return app


class ScheduleIn(BaseModel):
    interval_seconds: int | None = Field(
        ge=MIN_POLL_SECONDS,
        le=MAX_POLL_SECONDS,
        description="Seconds between polls, 300 to 86400; null returns to the deployment's interval.",
    )


def _mine(session: Session, user: Principal) -> list[Connection]:
    return list(
        session.scalars(
            select(Connection)
            .where(Connection.workspace_id == user.workspace_id, Connection.user_id == user.user_id)
            .order_by(Connection.created_at)
        ).all()
    )
