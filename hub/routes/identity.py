"""Signing in: the CRM's sign-in link, the "Which account?" choice, sign-out, dev sign-in, and who the caller is."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from core.identity import IdentityError, Principal, issue_signin_token, verify_signin_token
from core.settings import Settings
from hub import sessions
from hub.deps import CurrentUser, NotSignedIn, PageAction, SettingsDep, browser_session
from hub.pages import render
from hub.ratelimits import admit
from hub.sessions import DEMO_USER, DEMO_WORKSPACE, LOOPBACK_HOSTS, dev_signin_enabled

router = APIRouter(tags=["identity"])


def safe_next(target: str) -> str:
    """Only a path on this site may follow sign-in: no scheme, no host, no `//` or `\\` tricks."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(ch in target for ch in "\r\n\\"):
        raise ValueError("next must be a relative path on this site, such as /")
    return target


def signed_in(response: Response, settings: Settings, session_id: str) -> Response:
    response.set_cookie(
        settings.identity.cookie_name,
        session_id,
        httponly=True,
        samesite="lax",
        secure=settings.public_url.lower().startswith("https://"),
        max_age=sessions.lifetime_seconds(settings),
        path="/",
    )
    return response


@router.get("/session", response_class=RedirectResponse)
def start_session(request: Request, settings: SettingsDep, token: str = Query(...), next: str = Query("/")) -> Response:
    """Exchange the CRM's sign-in token for a session. A browser signed in as someone else is asked which
    account to go on with; it is never switched silently."""
    admit(request, "session")
    try:
        target = safe_next(next)
    except ValueError as exc:
        return HTMLResponse(render("message.html", title="bad link", detail=str(exc)), status_code=400)
    store = request.app.state.redis
    try:
        principal = verify_signin_token(token, settings.identity, store)
    except IdentityError as exc:
        raise NotSignedIn(f"this sign-in link is not valid: {exc}") from exc
    admit(request, "session", principal, by_address=False)
    current = browser_session(request)
    if current is not None and current.is_of(principal):
        return RedirectResponse(target, status_code=303)
    if current is not None:
        switch_to = {"user_id": principal.user_id, "workspace_id": principal.workspace_id, "next": target}
        sessions.hold_switch(store, request.cookies[settings.identity.cookie_name], current, switch_to)
        page = render("which_account.html", current=current, other=switch_to)
        return HTMLResponse(page, status_code=200)
    return signed_in(RedirectResponse(target, status_code=303), settings, sessions.start(store, settings, principal))


@router.post("/session/switch", response_class=RedirectResponse)
def choose_account(request: Request, session: PageAction, settings: SettingsDep, choice: str = Form(...)) -> Response:
    """The "Which account?" page's answer: `stay` keeps the current session, `switch` starts the other one."""
    store, session_id = request.app.state.redis, request.cookies[settings.identity.cookie_name]
    other = session.switch_to
    if other is None or choice not in ("stay", "switch"):
        return HTMLResponse(
            render("message.html", title="nothing to choose", detail="open synchub from the CRM again"),
            status_code=400,
        )
    if choice == "stay":
        sessions.hold_switch(store, session_id, session, None)
        return RedirectResponse("/", status_code=303)
    sessions.end(store, session_id)
    principal = Principal(user_id=other["user_id"], workspace_id=other["workspace_id"], expires_at=0)
    response = RedirectResponse(other["next"], status_code=303)
    return signed_in(response, settings, sessions.start(store, settings, principal))


@router.post("/session/sign-out", response_class=HTMLResponse)
def sign_out(request: Request, session: PageAction, settings: SettingsDep) -> Response:
    sessions.end(request.app.state.redis, request.cookies.get(settings.identity.cookie_name))
    page = render("message.html", title="signed out", detail="You are signed out of synchub.")
    response = HTMLResponse(page)
    response.delete_cookie(settings.identity.cookie_name, path="/")
    return response


@router.get("/dev/sign-in", include_in_schema=False)
def dev_sign_in(request: Request, settings: SettingsDep) -> Response:
    """Dev hubs only: a fresh sign-in token for the demo user on every visit, so the printed link keeps working."""
    peer = request.client.host if request.client else ""
    if not dev_signin_enabled(settings) or peer not in LOOPBACK_HOSTS:
        raise HTTPException(404)
    assert settings.identity.jwt_secret is not None
    token = issue_signin_token(settings.identity.jwt_secret.get_secret_value(), DEMO_USER, DEMO_WORKSPACE)
    return RedirectResponse("/session?" + urlencode({"token": token, "next": "/"}), status_code=303)


@router.get("/api/v1/me")
def me(user: CurrentUser) -> dict[str, str]:
    return {"user_id": user.user_id, "workspace_id": user.workspace_id}
