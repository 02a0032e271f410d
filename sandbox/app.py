"""Builds the sandbox's ASGI app: every provider's routers and the admin API over one SandboxState."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from sandbox import admin
from sandbox.google import admin as google_admin
from sandbox.google import oauth, people, token
from sandbox.google.errors import ApiError, server_error_body
from sandbox.google.token import access_token
from sandbox.state import SandboxState
from sandbox.traffic import TrafficMiddleware

ROUTERS = (oauth.router, token.router, people.router, admin.router, google_admin.router)


def fault_body(path: str, status_code: int) -> dict[str, Any]:
    """Every provider path is Google's today; another provider's fake adds its own body by path prefix here."""
    return server_error_body(status_code)


async def on_api_error(request: Request, error: Exception) -> Response:
    return error.response if isinstance(error, ApiError) else Response(status_code=500)


def identify(request: Request) -> None:
    """Tag a request the app will not see (a fault answers it) with the account and client its bearer names."""
    access_token(request, request.app.state.sandbox.google)


def create_app(state: SandboxState) -> FastAPI:
    app = FastAPI(title="synchub sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.sandbox = state
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_middleware(
        TrafficMiddleware, traffic=lambda: app.state.sandbox.traffic, fault_body=fault_body, identify=identify
    )
    return app
