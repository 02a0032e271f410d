"""Signing in: the CRM's session link, and who the caller is."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from core.identity import IdentityError, verify_token
from hub.deps import CurrentUser, NotSignedIn, SettingsDep
from hub.pages import render
from hub.ratelimits import admit

router = APIRouter(tags=["identity"])


def safe_next(target: str) -> str:
    """Only a path on this site may follow sign-in: no scheme, no host, no `//` or `\\` tricks."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(ch in target for ch in "\r\n\\"):
        raise ValueError("next must be a relative path on this site, such as /")
    return target


@router.get("/session", response_class=RedirectResponse)
def start_session(request: Request, settings: SettingsDep, token: str = Query(...), next: str = Query("/")) -> Response:
    admit(request, "session")
    try:
        target = safe_next(next)
    except ValueError as exc:
        return HTMLResponse(render("message.html", title="bad link", detail=str(exc)), status_code=400)
    try:
        principal = verify_token(token, settings.identity)
    except IdentityError as exc:
        raise NotSignedIn(f"this sign-in link is not valid: {exc}") from exc
    admit(request, "session", principal, by_address=False)
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


@router.get("/api/v1/me")
def me(user: CurrentUser) -> dict[str, str]:
    return {"user_id": user.user_id, "workspace_id": user.workspace_id}
