"""The FastAPI application: health, browser sessions, the settings page and the JSON API."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from core.db import make_engine, session_factory
from core.identity import IdentityError, verify_token
from core.models import Connection
from core.redis import redis_client
from core.settings import Settings
from hub import errors
from hub.deps import CurrentUser, NotSignedIn, RedisDep, SessionDep, SettingsDep
from hub.errors import NotFound
from hub.pages import render


def safe_next(target: str) -> str:
    """Only a path on this site may follow sign-in: no scheme, no host, no `//` or `\\` tricks."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(ch in target for ch in "\r\n\\"):
        raise ValueError("next must be a relative path on this site, such as /")
    return target


def connection_view(connection: Connection) -> dict[str, Any]:
    return {
        "id": str(connection.id),
        "auth_provider": connection.auth_provider,
        "account_email": connection.account_email,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "granted_scopes": connection.granted_scopes,
        "capabilities": connection.capabilities,
        "created_at": connection.created_at.isoformat(),
    }


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    app = FastAPI(title="synchub", version="0.1.0", docs_url="/docs", openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.database_url)
    app.state.sessions = session_factory(app.state.engine)
    app.state.redis = redis_client(settings.redis_url)
    errors.install(app)

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
    def settings_page(user: CurrentUser, session: SessionDep) -> HTMLResponse:
        connections = session.scalars(
            select(Connection)
            .where(Connection.workspace_id == user.workspace_id, Connection.user_id == user.user_id)
            .order_by(Connection.created_at)
        ).all()
        return HTMLResponse(render("settings.html", user=user, connections=connections, providers=[]))

    @app.get("/api/v1/me", tags=["identity"])
    def me(user: CurrentUser) -> dict[str, str]:
        return {"user_id": user.user_id, "workspace_id": user.workspace_id}

    @app.get("/api/v1/connections", tags=["connections"])
    def list_connections(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
        rows = session.scalars(
            select(Connection)
            .where(Connection.workspace_id == user.workspace_id, Connection.user_id == user.user_id)
            .order_by(Connection.created_at)
        ).all()
        return {"connections": [connection_view(row) for row in rows]}

    @app.get("/api/v1/connections/{connection_id}", tags=["connections"])
    def get_connection(connection_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
        row = session.get(Connection, connection_id)
        if row is None or row.workspace_id != user.workspace_id or row.user_id != user.user_id:
            raise NotFound(f"connection {connection_id}")
        return connection_view(row)

    return app
