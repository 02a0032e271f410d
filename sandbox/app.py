"""Builds the sandbox's ASGI app: every provider's routers and the admin API over one SandboxState."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from sandbox import admin
from sandbox.facebook import admin as facebook_admin
from sandbox.facebook import api as facebook_api
from sandbox.facebook import errors as facebook_errors
from sandbox.facebook import graph, login
from sandbox.google import admin as google_admin
from sandbox.google import oauth, people, token
from sandbox.google.calendar import admin as calendar_admin
from sandbox.google.calendar import api as calendar_api
from sandbox.google.calendar import errors as calendar_errors
from sandbox.google.errors import ApiError, server_error_body
from sandbox.google.token import access_token
from sandbox.state import SandboxState
from sandbox.traffic import TrafficMiddleware

# Facebook's routers come last: its `/{node}` and `/{node}/{edge}` take only what no other provider's path matches.
ROUTERS = (
    oauth.router,
    token.router,
    people.router,
    calendar_api.router,
    admin.router,
    google_admin.router,
    calendar_admin.router,
    facebook_admin.router,
    login.router,
    facebook_api.router,
)


def fault_body(path: str, status_code: int) -> dict[str, Any]:
    """The provider's own error body for a faulted request, by path."""
    if graph.is_graph_path(path):
        return facebook_errors.server_error_body(status_code)
    if path.startswith(calendar_errors.PREFIX):
        return calendar_errors.fault_body(status_code)
    return server_error_body(status_code)


async def on_api_error(request: Request, error: Exception) -> Response:
    return error.response if isinstance(error, ApiError) else Response(status_code=500)


def identify(request: Request) -> None:
    """Tag a request the app will not see (a fault answers it) with the account and client its token names."""
    if graph.is_graph_path(request.url.path):
        graph.identify(request, request.app.state.sandbox.facebook)
    else:
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
    app.add_middleware(graph.GraphVersions)  # outermost: the log and fault prefixes see Graph paths unversioned
    return app
