"""/healthz reports what the API can reach; OpenAPI is served at /docs."""

from __future__ import annotations

import httpx
from sqlalchemy.engine import Engine

from core.settings import Settings
from hub.app import create_app
from tests.conftest import LiveServer, free_port


def test_healthz_is_ok_with_database_and_redis(live_api: str) -> None:
    response = httpx.get(f"{live_api}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_healthz_is_503_when_redis_is_unreachable(settings: Settings, engine: Engine) -> None:
    broken = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with LiveServer(create_app(broken, engine)) as server:
        response = httpx.get(f"{server.url}/healthz", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and body["database"] == "ok"
    assert body["redis"].startswith("unreachable")


def test_openapi_docs_are_served(live_api: str) -> None:
    assert httpx.get(f"{live_api}/docs").status_code == 200
    paths = httpx.get(f"{live_api}/openapi.json").json()["paths"]
    assert {"/healthz", "/session", "/api/v1/connections", "/api/v1/connections/{connection_id}"} <= set(paths)
