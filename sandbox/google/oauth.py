"""Google's authorization endpoint: request checks, account chooser, consent and the redirect carrying a code."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from sandbox.cursors import CursorError
from sandbox.google import pages, scopes
from sandbox.google.deps import GoogleDep
from sandbox.google.state import Account, AuthCode, GoogleState, OAuthClient
from sandbox.traffic import tag_request

AUTHORIZE_PATH = "/o/oauth2/v2/auth"
REQUEST_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "access_type",
    "state",
    "include_granted_scopes",
    "prompt",
    "login_hint",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "hd",
)
MISMATCH = "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. redirect_uri={0}"
PROMPTS = frozenset({"none", "consent", "select_account"})
CHALLENGE_METHODS = frozenset({"S256", "plain"})

router = APIRouter()


class PageError(Exception):
    """Google shows an error page instead of redirecting back to the app."""

    def __init__(self, status_code: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status_code, self.error, self.description = status_code, error, description


@dataclass(frozen=True)
class AuthRequest:
    params: dict[str, str]
    client: OAuthClient
    redirect_uri: str
    scopes: tuple[str, ...]
    prompt: frozenset[str]
    offline: bool

    @property
    def include_granted_scopes(self) -> bool:
        return self.params.get("include_granted_scopes") == "true"


def required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise PageError(400, "invalid_request", f"Missing required parameter: {name}")
    return value


def checked_client(params: Mapping[str, str], google: GoogleState) -> tuple[OAuthClient, str]:
    client = google.clients.get(required(params, "client_id"))
    if client is None:
        raise PageError(401, "invalid_client", "The OAuth client was not found.")
    redirect_uri = required(params, "redirect_uri")
    if redirect_uri not in client.redirect_uris:
        raise PageError(400, "redirect_uri_mismatch", MISMATCH.format(redirect_uri))
    return client, redirect_uri


def checked_scopes(params: Mapping[str, str]) -> tuple[str, ...]:
    requested = scopes.parse(required(params, "scope"))
    invalid = [s for s in requested if not scopes.is_known(s)]
    if invalid:
        raise PageError(400, "invalid_scope", f"Some requested scopes were invalid. {{invalid={invalid}}}")
    return requested


def checked_options(params: Mapping[str, str]) -> tuple[frozenset[str], bool]:
    if required(params, "response_type") != "code":
        raise PageError(400, "unsupported_response_type", f"Invalid response_type: {params['response_type']}")
    prompt = frozenset(params.get("prompt", "").split())
    if not prompt <= PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise PageError(400, "invalid_request", f"Invalid parameter value for prompt: {params['prompt']}")
    access_type = params.get("access_type", "online")
    if access_type not in ("online", "offline"):
        raise PageError(400, "invalid_request", f"Invalid access_type: {access_type}")
    method = params.get("code_challenge_method")
    if method is not None and (method not in CHALLENGE_METHODS or not params.get("code_challenge")):
        raise PageError(400, "invalid_request", "Invalid code_challenge_method value.")
    return prompt, access_type == "offline"


def parse_request(params: Mapping[str, str], google: GoogleState) -> AuthRequest:
    """Checks in Google's order; only once client and redirect_uri are known may errors go back to the app."""
    kept = {name: params[name] for name in REQUEST_PARAMS if name in params}
    client, redirect_uri = checked_client(kept, google)
    requested = checked_scopes(kept)
    prompt, offline = checked_options(kept)
    return AuthRequest(kept, client, redirect_uri, requested, prompt, offline)


def request_from_form(blob: object, google: GoogleState) -> AuthRequest:
    try:
        payload = google.cursors.decode(str(blob))
    except CursorError:
        raise PageError(400, "invalid_request", "The request was altered.") from None
    if payload.get("kind") != "authorize":
        raise PageError(400, "invalid_request", "The request was altered.")
    return parse_request(payload["params"], google)


def form_account(value: object, google: GoogleState) -> Account:
    account = google.accounts.get(str(value))
    if account is None:
        raise PageError(400, "invalid_request", "Unknown account.")
    return account


def redirect(req: AuthRequest, **params: str) -> RedirectResponse:
    state = {"state": req.params["state"]} if "state" in req.params else {}
    query = urlencode({**state, **params}, quote_via=quote, safe=":/")
    separator = "&" if "?" in req.redirect_uri else "?"
    return RedirectResponse(f"{req.redirect_uri}{separator}{query}", status_code=302)


def consent_scopes(req: AuthRequest, account: Account, google: GoogleState) -> tuple[list[str], list[str], list[str]]:
    """The sign-in scopes (always granted); with include_granted_scopes, those the app already holds (shown as
    granted, kept); and the scopes the user is asked for."""
    earlier = google.granted(account.email, req.client.client_id) if req.include_granted_scopes else set()
    sign_in = [s for s in req.scopes if s in scopes.SIGN_IN]
    kept = [s for s in req.scopes if s not in scopes.SIGN_IN and s in earlier]
    asked = [s for s in req.scopes if s not in scopes.SIGN_IN and s not in earlier]
    return sign_in, kept, asked


def with_checkboxes(asked: list[str], google: GoogleState) -> bool:
    """Granular consent: a checkbox per asked scope once two or more are asked."""
    return len(asked) >= 2 or (len(asked) == 1 and google.settings.force_scope_checkboxes)


def approve(
    req: AuthRequest, account: Account, granted: tuple[str, ...], consent_shown: bool, google: GoogleState
) -> Response:
    earlier = google.granted(account.email, req.client.client_id) if req.include_granted_scopes else set()
    token_scopes = granted + tuple(sorted(earlier - set(granted)))
    if consent_shown:
        google.record_grant(account.email, req.client.client_id, granted)
    code = AuthCode(
        client_id=req.client.client_id,
        redirect_uri=req.redirect_uri,
        account=account.email,
        scopes=token_scopes,
        offline=req.offline,
        consent_shown=consent_shown,
        code_challenge=req.params.get("code_challenge"),
        code_challenge_method=req.params.get("code_challenge_method", "plain")
        if "code_challenge" in req.params
        else None,
        nonce=req.params.get("nonce"),
        expires_at=time.time() + google.settings.auth_code_lifetime,
    )
    value = google.issue_code(code)
    prompt = "consent" if consent_shown else "none"
    return redirect(req, code=value, scope=" ".join(token_scopes), authuser="0", prompt=prompt)


def continue_as(req: AuthRequest, account: Account, google: GoogleState) -> Response:
    earlier = google.granted(account.email, req.client.client_id)
    if "consent" not in req.prompt and set(req.scopes) <= earlier:
        return approve(req, account, req.scopes, consent_shown=False, google=google)
    if "none" in req.prompt:
        return redirect(req, error="consent_required")
    sign_in, kept, asked = consent_scopes(req, account, google)
    blob = google.cursors.encode({"kind": "authorize", "params": req.params})
    checkboxes = with_checkboxes(asked, google)
    return pages.consent(blob, req.client.client_id, account.email, sign_in, asked, checkboxes, kept)


def on_page_error(handler: PageError) -> Response:
    return pages.error_page(handler.status_code, handler.error, handler.description)


@router.get(AUTHORIZE_PATH)
async def authorize(request: Request, google: GoogleDep) -> Response:
    tag_request(request, app=request.query_params.get("client_id"))
    try:
        req = parse_request(request.query_params, google)
    except PageError as error:
        return on_page_error(error)
    hint = None if "select_account" in req.prompt else req.params.get("login_hint")
    account = google.accounts.get(hint or "")
    if account is not None:
        tag_request(request, account=account.email)
        return continue_as(req, account, google)
    if "none" in req.prompt:
        return redirect(req, error="login_required")
    blob = google.cursors.encode({"kind": "authorize", "params": req.params})
    choices = [(a.email, a.name) for a in google.accounts.values()]
    return pages.chooser(blob, req.client.client_id, choices)


async def posted_choice(request: Request, google: GoogleState) -> tuple[FormData, AuthRequest, Account] | Response:
    """The form, the authorization request it carries and the chosen account, or the error page."""
    form = await request.form()
    try:
        req = request_from_form(form.get("request"), google)
        account = form_account(form.get("account"), google)
    except PageError as error:
        return on_page_error(error)
    tag_request(request, account=account.email, app=req.client.client_id)
    return form, req, account


@router.post(pages.ACCOUNT_PATH)
async def choose_account(request: Request, google: GoogleDep) -> Response:
    posted = await posted_choice(request, google)
    if isinstance(posted, Response):
        return posted
    _, req, account = posted
    return continue_as(req, account, google)


@router.post(pages.CONSENT_PATH)
async def consent(request: Request, google: GoogleDep) -> Response:
    posted = await posted_choice(request, google)
    if isinstance(posted, Response):
        return posted
    form, req, account = posted
    action = form.get("action")
    if action not in ("allow", "deny"):
        return on_page_error(PageError(400, "invalid_request", "Choose Continue or Cancel."))
    sign_in, kept, asked = consent_scopes(req, account, google)
    ticked = {str(s) for s in form.getlist("scope")} & set(asked) if with_checkboxes(asked, google) else set(asked)
    granted = tuple(s for s in req.scopes if s in sign_in or s in kept or s in ticked)
    if action == "deny" or not granted:
        return redirect(req, error="access_denied")
    return approve(req, account, granted, consent_shown=True, google=google)
