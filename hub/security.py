"""Security headers on every answer of the hub: the CSP, framing, referrer, sniffing and caching rules."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Scripts and styles come only from the hub's own files: no inline code, no eval. Swagger UI sets styles
# through the DOM (element.style), which the CSP does not govern; its CSS draws icons from data: URLs.
# No form-action: the connect form's POST answers with a redirect to the provider's consent page, which
# Chromium would check against form-action and block.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # Not no-referrer: under it browsers send `Origin: null` on the page's own POSTs, which the Origin
    # check would refuse. same-origin keeps callback URLs (with their `code`) out of other sites' logs.
    "referrer-policy": "same-origin",
}

STATIC_PREFIX = "/static/"


def cache_control(path: str) -> str:
    """Answers hold a user's data and are never stored; static files may be kept but are revalidated (ETag)."""
    return "no-cache" if path.startswith(STATIC_PREFIX) else "no-store"


class SecurityHeaders:
    """ASGI middleware: sets `HEADERS` on every HTTP answer, and `Cache-Control` where the route set none."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        caching = cache_control(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                headers.setdefault("cache-control", caching)
            await send(message)

        await self.app(scope, receive, send_with_headers)
