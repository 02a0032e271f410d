"""Facebook Login: the dialog (a checkbox per permission and per Page), the code and long-lived token exchanges,
and `debug_token`."""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sandbox.cursors import CursorError
from sandbox.facebook.errors import GraphError, GraphJSONResponse, graph_error
from sandbox.facebook.graph import CallDep, FacebookDep, call_params, resolve_token
from sandbox.facebook.state import KNOWN_PERMISSIONS, PAGE_SCOPED, App, Code, FacebookState, Grant, Token, User
from sandbox.traffic import tag_request

DIALOG_PATH = "/dialog/oauth"
ACCOUNT_PATH = "/dialog/oauth/account"
CONFIRM_PATH = "/dialog/oauth/confirm"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
{body}
</body></html>
"""
BLOCKED = (
    "URL blocked: This redirect failed because the redirect URI is not whitelisted in the app's Client OAuth "
    "Settings. Make sure Client and Web OAuth Login are on and add all your app domains as Valid OAuth Redirect URIs."
)

router = APIRouter()


class DialogError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class DialogRequest:
    params: dict[str, str]
    app: App
    redirect_uri: str
    permissions: tuple[str, ...]

    @property
    def rerequest(self) -> bool:
        return self.params.get("auth_type") == "rerequest"


def page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=escape(title), body=body), status_code=status_code)


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def error_page(error: DialogError) -> HTMLResponse:
    return page("Error", f'<h1>Sorry, something went wrong.</h1>\n<p class="error">{escape(error.message)}</p>', 400)


def parse_dialog(params: Mapping[str, str], facebook: FacebookState) -> DialogRequest:
    app = facebook.apps.get(params.get("client_id", ""))
    if app is None:
        raise DialogError("Invalid App ID: The provided app ID does not look like a valid app ID.")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris:
        raise DialogError(BLOCKED)
    if params.get("response_type", "code") not in ("code", "code granted_scopes", "granted_scopes"):
        raise DialogError("The sandbox answers response_type=code only.")
    wanted = [p for p in re.split(r"[,\s]+", params.get("scope", "")) if p]
    invalid = [p for p in wanted if p not in KNOWN_PERMISSIONS]
    if invalid:
        raise DialogError(f"Invalid Scopes: {', '.join(invalid)}.")
    permissions = tuple(dict.fromkeys(["public_profile", *wanted]))
    return DialogRequest(dict(params), app, redirect_uri, permissions)


def asked(req: DialogRequest, grant: Grant) -> list[str]:
    """Permissions the dialog shows a checkbox for: not granted yet, and not declined unless re-requested."""
    return [
        p
        for p in req.permissions
        if p != "public_profile" and p not in grant.granted and (req.rerequest or p not in grant.declined)
    ]


def wants_pages(req: DialogRequest) -> bool:
    return any(p in PAGE_SCOPED for p in req.permissions)


def blob(req: DialogRequest, facebook: FacebookState) -> str:
    return facebook.cursors.encode({"kind": "dialog", "params": req.params})


def chooser(req: DialogRequest, facebook: FacebookState) -> HTMLResponse:
    forms = "\n".join(
        f'<form method="post" action="{ACCOUNT_PATH}">{hidden("request", blob(req, facebook))}'
        f'{hidden("user", user.id)}<button type="submit">Continue as {escape(user.name)}</button></form>'
        for user in facebook.users.values()
    )
    return page("Log in to Facebook", f"<h1>Log in to {escape(req.app.name)}</h1>\n{forms}")


def consent(req: DialogRequest, user: User, facebook: FacebookState) -> HTMLResponse:
    grant = facebook.grants.get((user.id, req.app.app_id)) or Grant(user.id, req.app.app_id)
    already = "".join(f"<li>{escape(p)}</li>" for p in req.permissions if p in grant.granted or p == "public_profile")
    boxes = "".join(
        f'<li><label><input type="checkbox" name="permission" value="{escape(p)}" checked> {escape(p)}</label></li>'
        for p in asked(req, grant)
    )
    pages = ""
    if wants_pages(req):
        chosen = grant.pages or set(user.pages)
        items = "".join(
            f'<li><label><input type="checkbox" name="page" value="{escape(pid)}"'
            f"{' checked' if pid in chosen else ''}> {escape(facebook.pages[pid].name)}</label></li>"
            for pid in user.pages
        )
        pages = f'<h2>Choose the Pages {escape(req.app.name)} can access</h2>\n<ul class="pages">{items}</ul>\n'
    body = (
        f"<h1>{escape(req.app.name)} is requesting access to:</h1>\n<p>{escape(user.name)}</p>\n"
        f'<form method="post" action="{CONFIRM_PATH}">{hidden("request", blob(req, facebook))}'
        f"{hidden('user', user.id)}\n"
        f'<ul class="granted">{already}</ul>\n<ul class="permissions">{boxes}</ul>\n{pages}'
        '<button type="submit" name="action" value="cancel">Cancel</button>\n'
        '<button type="submit" name="action" value="allow">Continue</button>\n</form>'
    )
    return page("Log in with Facebook", body)


def redirect(req: DialogRequest, fragment: str = "", **params: str) -> RedirectResponse:
    state = {"state": req.params["state"]} if "state" in req.params else {}
    query = urlencode({**params, **state}, quote_via=quote, safe=":/,")
    separator = "&" if "?" in req.redirect_uri else "?"
    return RedirectResponse(f"{req.redirect_uri}{separator}{query}{fragment}", status_code=302)


@router.get(DIALOG_PATH)
async def dialog(request: Request, facebook: FacebookDep) -> Response:
    tag_request(request, app=request.query_params.get("client_id"))
    try:
        req = parse_dialog(request.query_params, facebook)
    except DialogError as error:
        return error_page(error)
    return chooser(req, facebook)


async def posted(request: Request, facebook: FacebookState) -> tuple[Any, DialogRequest, User]:
    form = await request.form()
    try:
        payload = facebook.cursors.decode(str(form.get("request")))
    except CursorError:
        raise DialogError("The request was altered.") from None
    if payload.get("kind") != "dialog":
        raise DialogError("The request was altered.")
    req = parse_dialog(payload["params"], facebook)
    user = facebook.users.get(str(form.get("user")))
    if user is None:
        raise DialogError("Unknown user.")
    tag_request(request, account=user.id, app=req.app.app_id)
    return form, req, user


@router.post(ACCOUNT_PATH)
async def choose_user(request: Request, facebook: FacebookDep) -> Response:
    try:
        _, req, user = await posted(request, facebook)
    except DialogError as error:
        return error_page(error)
    return consent(req, user, facebook)


@router.post(CONFIRM_PATH)
async def confirm(request: Request, facebook: FacebookDep) -> Response:
    try:
        form, req, user = await posted(request, facebook)
    except DialogError as error:
        return error_page(error)
    if form.get("action") != "allow":
        return redirect(req, error_reason="user_denied", error="access_denied", error_description="Permissions error.")
    grant = facebook.grant(user.id, req.app.app_id)
    shown = set(asked(req, grant))
    ticked = {str(p) for p in form.getlist("permission")} & shown
    grant.granted |= ticked | {"public_profile"}
    grant.declined = (grant.declined | (shown - ticked)) - grant.granted
    if wants_pages(req):
        grant.pages = {str(p) for p in form.getlist("page")} & set(user.pages)
    grant.data_access_expires_at = time.time() + facebook.settings.data_access_lifetime
    code = Code(req.app.app_id, user.id, req.redirect_uri, time.time() + facebook.settings.auth_code_lifetime)
    extra = {}
    if "granted_scopes" in req.params.get("response_type", ""):
        extra = {"granted_scopes": ",".join(sorted(grant.granted)), "denied_scopes": ",".join(sorted(grant.declined))}
    return redirect(req, "#_=_", code=facebook.issue_code(code), **extra)


def checked_app(params: Mapping[str, str], facebook: FacebookState) -> App:
    app = facebook.apps.get(params.get("client_id", ""))
    if app is None:
        raise graph_error(101, "Error validating application. Invalid application ID.")
    if not hmac.compare_digest(app.secret, params.get("client_secret", "")):
        raise graph_error(1, "Error validating client secret.", type_="OAuthException")
    return app


def token_body(token: Token) -> dict[str, Any]:
    return {"access_token": token.value, "token_type": "bearer", "expires_in": int(token.expires_at - token.issued_at)}


def exchange_code(params: Mapping[str, str], app: App, facebook: FacebookState) -> Token:
    code = facebook.codes.get(params.get("code", ""))
    if code is None or code.app_id != app.app_id:
        raise graph_error(100, "Invalid verification code format.", type_="OAuthException")
    if code.used:
        raise graph_error(100, "This authorization code has been used.", 36009, "OAuthException")
    if time.time() >= code.expires_at:
        raise graph_error(100, "This authorization code has expired.", 36007, "OAuthException")
    if params.get("redirect_uri") != code.redirect_uri:
        message = (
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you "
            "used in the OAuth dialog request"
        )
        raise graph_error(100, message, 36008, "OAuthException")
    code.used = True
    return facebook.issue_token("USER", app.app_id, code.user_id, None, facebook.settings.short_token_lifetime, False)


def exchange_long_lived(params: Mapping[str, str], app: App, facebook: FacebookState) -> Token:
    caller = resolve_token(params.get("fb_exchange_token"), facebook, time.time())
    if caller.token is None or caller.token.kind != "USER" or caller.app.app_id != app.app_id:
        raise graph_error(190, "Invalid OAuth access token - Cannot parse access token")
    lifetime = facebook.settings.long_token_lifetime
    return facebook.issue_token("USER", app.app_id, caller.token.user_id, None, lifetime, True)


@router.api_route("/oauth/access_token", methods=["GET", "POST"])
async def access_token(request: Request, facebook: FacebookDep) -> Response:
    params = await call_params(request)
    tag_request(request, app=params.get("client_id"))
    app = checked_app(params, facebook)
    grant_type = params.get("grant_type")
    if grant_type == "client_credentials":
        return GraphJSONResponse({"access_token": f"{app.app_id}|{app.secret}", "token_type": "bearer"})
    if grant_type == "fb_exchange_token":
        token = exchange_long_lived(params, app, facebook)
    elif grant_type in (None, "authorization_code"):
        token = exchange_code(params, app, facebook)
    else:
        raise graph_error(100, f"Unsupported grant_type: {grant_type}", type_="OAuthException")
    tag_request(request, account=token.user_id)
    return GraphJSONResponse(token_body(token))


def granular(grant: Grant) -> list[dict[str, Any]]:
    return [
        {"scope": p, "target_ids": sorted(grant.pages)} if p in PAGE_SCOPED else {"scope": p}
        for p in sorted(grant.granted)
    ]


def debug_data(value: str, facebook: FacebookState) -> dict[str, Any]:
    token = facebook.tokens.get(value)
    if token is None:
        error = {"code": 190, "message": "Invalid OAuth access token.", "subcode": None}
        return {"is_valid": False, "error": {k: v for k, v in error.items() if v is not None}, "scopes": []}
    app = facebook.apps[token.app_id]
    grant = facebook.grants.get((token.user_id or "", token.app_id))
    data: dict[str, Any] = {
        "app_id": app.app_id,
        "type": token.kind,
        "application": app.name,
        "data_access_expires_at": int(grant.data_access_expires_at) if grant else 0,
        "expires_at": int(token.expires_at),
        "is_valid": True,
        "issued_at": int(token.issued_at),
        "scopes": sorted(grant.granted) if grant else [],
        "granular_scopes": granular(grant) if grant else [],
        "user_id": token.user_id,
    }
    if token.page_id:
        data["profile_id"] = token.page_id
    try:
        resolve_token(value, facebook, time.time())
    except GraphError as error:
        failure = json.loads(bytes(error.response.body))["error"]
        data["is_valid"] = False
        data["error"] = {"code": failure["code"], "message": failure["message"]}
        if "error_subcode" in failure:
            data["error"]["subcode"] = failure["error_subcode"]
    return data


@router.get("/debug_token")
async def debug_token(call: CallDep) -> Response:
    value = call.params.get("input_token")
    if not value:
        raise graph_error(100, "(#100) The parameter input_token is required", type_="OAuthException")
    return call.respond({"data": debug_data(value, call.facebook)})
