"""Request body caps, counted on the bytes as they arrive, before any route reads or parses them."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.errors import BodyTooLarge, too_large


class BodyCaps:
    """The most a request body may hold: one default for the API and pages, and caps by path prefix."""

    def __init__(self, default: int) -> None:
        self.default = default
        self._prefixes: dict[str, int] = {}

    def route(self, prefix: str, cap: int) -> None:
        """Requests whose path is `prefix` or under it take bodies up to `cap` bytes (a webhook receiver sets its
        connector's); the longest matching prefix wins."""
        self._prefixes[prefix.rstrip("/")] = cap

    def cap_for(self, path: str) -> int:
        matching = [p for p in self._prefixes if path == p or path.startswith(p + "/")]
        return self._prefixes[max(matching, key=len)] if matching else self.default


class BodyLimit:
    """ASGI middleware: a declared `Content-Length` over the cap is answered 413 before a byte of the body is
    read; a body without one (chunked) is counted as it arrives and cut off at the cap. Either way the
    connection is closed, so the rest is never read."""

    def __init__(self, app: ASGIApp, caps: BodyCaps) -> None:
        self.app = app
        self.caps = caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.caps.cap_for(scope["path"])
        if declared_length(scope) > cap:
            await too_large(Request(scope), BodyTooLarge(cap))(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(cap)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await too_large(Request(scope), exc)(scope, receive, send)


def declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def install(app: FastAPI, default: int) -> None:
    """Cap every route's body at `default` bytes; `app.state.body_caps.route(...)` sets a prefix's own cap."""
    app.state.body_caps = BodyCaps(default)
    app.add_middleware(BodyLimit, caps=app.state.body_caps)
