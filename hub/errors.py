"""The one mapping from errors to HTTP responses: JSON for API callers, a plain page for browsers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from core.errors import ConnectorError
from hub.deps import CrossSiteRefused, NotSignedIn, NotTheService, ServiceCallsOff
from hub.pages import render
from hub.ratelimits import TooManyRequests
from hub.sessions import dev_signin_enabled


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Conflict(Exception):
    """The request cannot apply to the resource as it is now; the message says why and what to do."""


class BodyTooLarge(HTTPException):
    """The request body is over its route's cap. An HTTPException, so FastAPI's body reading passes it on."""

    def __init__(self, cap: int) -> None:
        super().__init__(413, f"the request body is over the {cap} bytes this address accepts")


DEV_SIGNIN_HINT = "This is a dev hub: sign in as the demo user at /dev/sign-in (the link `synchub dev` printed)."

CLIP = 80


def _clip(value: object) -> object:
    text = value if isinstance(value, str) else None
    return value if text is None or len(text) <= CLIP else text[:CLIP] + "..."


def brief(error: Mapping[str, Any]) -> dict[str, Any]:
    """A validation error without the input it refused (which may be large or private): where, what, and why."""
    return {"loc": [_clip(part) for part in error["loc"]], "msg": _clip(str(error["msg"])), "type": error["type"]}


def too_large(request: Request, exc: BodyTooLarge) -> Response:
    """413, and the connection closes, so the rest of the body is not read."""
    response = _reply(request, 413, "request too large", str(exc.detail))
    response.headers["Connection"] = "close"
    return response


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "text/html")


def _reply(request: Request, status: int, title: str, detail: str, hint: str = "") -> Response:
    if _wants_html(request):
        return HTMLResponse(render("message.html", title=title, detail=detail, hint=hint), status_code=status)
    return JSONResponse({"error": title, "detail": detail}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
        return too_large(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": [brief(error) for error in exc.errors()]}, status_code=422)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        hint = DEV_SIGNIN_HINT if dev_signin_enabled(request.app.state.settings) else ""
        response = _reply(request, 401, "not signed in", exc.reason, hint)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(CrossSiteRefused)
    async def _cross_site(request: Request, exc: CrossSiteRefused) -> Response:
        return _reply(request, 403, "refused", str(exc))

    @app.exception_handler(NotTheService)
    async def _not_the_service(request: Request, exc: NotTheService) -> Response:
        return _reply(request, 403, "refused", str(exc))

    @app.exception_handler(ServiceCallsOff)
    async def _service_off(request: Request, exc: ServiceCallsOff) -> Response:
        detail = "workspace-wide calls are off: SYNCHUB_PRIVACY__SERVICE_TOKEN is unset"
        return _reply(request, 404, "not found", detail)

    @app.exception_handler(TooManyRequests)
    async def _too_many(request: Request, exc: TooManyRequests) -> Response:
        response = _reply(request, 429, "too many requests", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> Response:
        return _reply(request, 409, "conflict", str(exc))

    @app.exception_handler(ConnectorError)
    async def _provider_refused(request: Request, exc: ConnectorError) -> Response:
        return _reply(request, 502, "the provider did not do it", str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return _reply(request, 404, "not found", f"{exc.what} does not exist in your workspace")
