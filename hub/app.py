"""The FastAPI application: its shared state (database, Redis, sync engine, Celery) and its routers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from core.db import make_engine, session_factory
from core.redis import redis_client
from core.settings import Settings
from hub import connect, docs, errors, limits, security
from hub.routes import api, erasure, health, identity, metrics, pages, privacy_export, records
from oauth.providers import client_settings
from sync.celery_app import make_celery
from sync.runtime import Runtime
from sync.wiring import build_engine
from webhooks import receiver


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    app = FastAPI(title="synchub", version="0.1.0", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.database_url)
    app.state.sessions = session_factory(app.state.engine)
    app.state.redis = redis_client(settings.redis_url)
    app.state.sync_engine = build_engine(Runtime(settings, app.state.engine, app.state.sessions, app.state.redis))
    app.state.celery = make_celery(settings)
    errors.install(app)
    limits.install(app, settings.http.max_body_bytes)
    app.add_middleware(security.SecurityHeaders)  # added last, so outermost: a 413 carries the headers too
    docs.install(app)
    for router in (
        connect.router,
        health.router,
        identity.router,
        pages.router,
        api.router,
        records.router,
        privacy_export.router,
        metrics.router,
        erasure.router,
    ):
        app.include_router(router)
    receiver.install(app, receiver.endpoints(settings, client_secret(settings)), app.state.sessions, app.state.celery)
    return app


def client_secret(settings: Settings) -> Callable[[str], str | None]:
    """An auth provider's OAuth client secret, which signs most providers' webhooks."""

    def of(provider: str) -> str | None:
        found = client_settings(settings, provider)
        return found.client_secret.get_secret_value() if found is not None else None

    return of
