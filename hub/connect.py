"""Connecting accounts: start a consent flow, and finish it at the provider's callback."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import Capability
from connectors.registry import capabilities_of
from core.db import transaction
from core.identity import Principal, issue_signin_token
from core.models import Connection, ConnectionStatus, audit, audit_grant_change, utcnow
from core.scopes import missing
from hub.connect_form import connect_by_form, form_page
from hub.connections import account_connection, new_connection, request_syncs
from hub.deps import CurrentUser, PageAction, PageSession, SettingsDep
from hub.pages import render
from hub.ratelimits import admit
from oauth.client import GrantRefused, OAuthClient, client_for, new_code_verifier
from oauth.config import Account, TokenSet
from oauth.forms import CredentialsRefused
from oauth.providers import FORM_PROVIDERS, PROVIDERS
from oauth.state import PendingGrant, StateStore
from sync.retention import cancelled
from token_vault.fresh import ACCESS, REFRESH
from token_vault.vault import Vault, key_ring

router = APIRouter(tags=["connect"])


class ConnectRefused(Exception):
    """The flow cannot go on; `detail` says why in plain words and nothing was stored."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


def refused_page(exc: ConnectRefused) -> HTMLResponse:
    return HTMLResponse(render("message.html", title="not connected", detail=exc.detail), status_code=exc.status)


@dataclass(frozen=True)
class ConnectPlan:
    """What a connect start asks for: the capabilities, and the connection it reconnects (if any)."""

    provider: str
    wanted: list[str]
    existing: Connection | None
    available: dict[str, tuple[Any, Capability]]

    def query(self) -> str:
        params = {"capabilities": ",".join(self.wanted)}
        if self.existing is not None:
            params["reconnect"] = str(self.existing.id)
        return urlencode(params)


def plan(request: Request, provider: str, user: Principal, capabilities: str, reconnect: str) -> ConnectPlan:
    """Check a connect request (provider, capabilities, the connection to reconnect) or raise ConnectRefused."""
    settings = request.app.state.settings
    by_form = provider in FORM_PROVIDERS  # needs no OAuth client: connectable before a connector on it is enabled
    available = capabilities_of(settings, provider) if provider in PROVIDERS or by_form else {}
    if not available and not by_form:
        raise ConnectRefused(f"{provider} is not a provider this hub connects to", 404)
    with request.app.state.sessions() as session:
        if cancelled(session, user.workspace_id) is not None:
            raise ConnectRefused("this workspace is cancelled: nothing is connected unless it is reactivated", 409)
    wanted = [c.strip() for c in capabilities.split(",") if c.strip()]
    existing = None
    if reconnect:
        existing = reconnect_target(request, provider, user, reconnect)
        wanted = wanted or [c for c in existing.capabilities if c in available]
    wanted = wanted or list(available)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise ConnectRefused(f"unknown capabilities: {', '.join(unknown)}")
    twice = sorted(c for c, n in Counter(wanted).items() if n > 1)
    if twice:
        raise ConnectRefused(f"capabilities named more than once: {', '.join(twice)}")
    return ConnectPlan(provider, wanted, existing, available)


@router.get("/connect/{provider}", response_class=HTMLResponse)
def connect_page(
    request: Request, provider: str, session: PageSession, capabilities: str = "", reconnect: str = ""
) -> Response:
    """The page that names who connects what where; only its form's POST starts the provider's consent."""
    try:
        found = plan(request, provider, session.principal, capabilities, reconnect)
    except ConnectRefused as exc:
        return refused_page(exc)
    if provider in FORM_PROVIDERS:
        return form_page(found, request.app.state.settings, session, dict(request.query_params))
    names = [found.available[c][1].display_name for c in found.wanted]
    page = render(
        "connect.html",
        session=session,
        provider=PROVIDERS[provider].display_name,
        slug=provider,
        capabilities=names,
        wanted=",".join(found.wanted),
        reconnect=str(found.existing.id) if found.existing is not None else "",
        account=found.existing.account_email if found.existing is not None else None,
    )
    return HTMLResponse(page)


async def submitted_form(request: Request) -> dict[str, Any]:
    """The POSTed form's fields (parsed once; the CSRF check read the same)."""
    return dict((await request.form()).items())


@router.post("/connect/{provider}")
def connect(
    request: Request,
    provider: str,
    session: PageAction,
    settings: SettingsDep,
    submitted: dict[str, Any] = Depends(submitted_form),
    capabilities: str = Form(""),
    reconnect: str = Form(""),
) -> Response:
    """The connect page's form: send the browser to the provider's consent page, or, for a provider connected by
    a form, check what was typed and connect (the form again, with the reason, when that fails)."""
    user = session.principal
    admit(request, "connect", user)
    try:
        found = plan(request, provider, user, capabilities, reconnect)
    except ConnectRefused as exc:
        return refused_page(exc)
    if provider in FORM_PROVIDERS:
        try:
            connection_id = connect_by_form(request, found, user, submitted)
        except CredentialsRefused as exc:
            values = FORM_PROVIDERS[provider].values(submitted)
            return form_page(found, settings, session, values, exc.detail, exc.status)
        return RedirectResponse(f"/?connected={connection_id}", status_code=303)
    config = PROVIDERS[provider]
    available, wanted = found.available, found.wanted
    scopes = list(
        dict.fromkeys([*config.signin_scopes, *(s for c in wanted for s in available[c][1].requested_scopes)])
    )
    verifier = new_code_verifier()
    pending = PendingGrant(
        provider, user.workspace_id, user.user_id, tuple(wanted), tuple(scopes), verifier, reconnect or None
    )
    state = StateStore(request.app.state.redis).issue(pending)
    asked = [available[c][1] for c in wanted]
    again = declined(found.existing, asked, config.expand_scope) if found.existing is not None else frozenset()
    url = client_for(settings, provider).authorization_url(scopes, state, verifier, again)
    return RedirectResponse(url, status_code=303)


class ConnectIn(BaseModel):
    capabilities: list[str] = Field(default_factory=list, description="Capabilities to grant; none: all offered.")
    reconnect: uuid.UUID | None = Field(default=None, description="The user's connection this reconnects.")
    fields: dict[str, str] | None = Field(
        default=None,
        description="For a provider connected by a form (an app password): the form's fields by name (see the "
        "connect page). Given, the hub checks them with the provider and connects at once; the password is sealed "
        "and never returned.",
    )


@router.post("/api/v1/connect/{provider}", tags=["connections"], response_model=None)
def start_connect(
    request: Request, provider: str, user: CurrentUser, settings: SettingsDep, body: ConnectIn | None = None
) -> dict[str, str | None] | JSONResponse:
    """Where to send the user to connect: the hub's own connect page (`next`), and a sign-in link that opens it
    (`sign_in_url`; null when only the CRM can sign sign-in tokens, with RS256). Never the provider's consent URL:
    a connect starts only from the user's POST on that page.

    A provider connected by a form takes its `fields` here too: the answer is then the connection
    (`connection_id`), or 400 (504 for a timeout, 409 for another account) with a `reason` code and a plain
    `detail`, nothing stored."""
    admit(request, "connect", user)
    wanted = body or ConnectIn()
    reconnect = str(wanted.reconnect) if wanted.reconnect else ""
    try:
        found = plan(request, provider, user, ",".join(wanted.capabilities), reconnect)
    except ConnectRefused as exc:
        raise HTTPException(exc.status, exc.detail) from exc
    if provider in FORM_PROVIDERS and wanted.fields is not None:
        try:
            connection_id = connect_by_form(request, found, user, wanted.fields)
        except CredentialsRefused as exc:
            answer = {"error": "not connected", "reason": exc.reason, "detail": exc.detail}
            return JSONResponse(answer, status_code=exc.status)
        return {"connection_id": str(connection_id), "next": None, "sign_in_url": None}
    target = f"/connect/{provider}?{found.query()}"
    identity = settings.identity
    sign_in_url = None
    if identity.jwt_algorithm == "HS256" and identity.jwt_secret is not None:
        token = issue_signin_token(identity.jwt_secret.get_secret_value(), user.user_id, user.workspace_id)
        sign_in_url = f"{settings.public_url.rstrip('/')}/session?{urlencode({'token': token, 'next': target})}"
    return {"next": target, "sign_in_url": sign_in_url}


def declined(connection: Connection, capabilities: list[Capability], expand: Callable[[str], str]) -> frozenset[str]:
    """The scopes asked for again that answer a group the connection's grant lacks: the user declined them before
    (or took them back), and some providers ask for such scopes again only when told to."""
    return frozenset(
        scope
        for capability in capabilities
        for group in missing(connection.granted_scopes, capability.required)
        for scope in capability.requested_scopes
        if expand(scope) in group
    )


def reconnect_target(request: Request, provider: str, user: Principal, connection_id: str) -> Connection:
    """The user's own connection at this provider that a reconnect is for."""
    try:
        wanted = uuid.UUID(connection_id)
    except ValueError as exc:
        raise ConnectRefused(f"{connection_id!r} is not a connection id") from exc
    sessions: sessionmaker[Session] = request.app.state.sessions
    with sessions() as session:
        connection = session.get(Connection, wanted)
        if (
            connection is None
            or (connection.workspace_id, connection.user_id) != (user.workspace_id, user.user_id)
            or connection.auth_provider != provider
        ):
            raise ConnectRefused(f"no {provider} connection {connection_id} of yours to reconnect", 404)
        session.expunge(connection)
        return connection


@router.get("/oauth/{provider}/callback")
def callback(request: Request, provider: str, session: PageSession) -> Response:
    try:
        connection_id = complete(request, provider, session.principal)
    except ConnectRefused as exc:
        return refused_page(exc)
    return RedirectResponse(f"/?connected={connection_id}", status_code=303)


@dataclass(frozen=True)
class Grant:
    account: Account
    tokens: TokenSet
    pending: PendingGrant


def complete(request: Request, provider: str, user: Principal) -> uuid.UUID:
    params = request.query_params
    pending = StateStore(request.app.state.redis).take(params.get("state", ""))
    if pending is None or pending.provider != provider:
        raise ConnectRefused("this sign-in has expired or was already used; start again from the settings page")
    if (pending.workspace_id, pending.user_id) != (user.workspace_id, user.user_id):
        raise ConnectRefused("this sign-in was started by another user; start again from your own session", 403)
    if params.get("error"):
        raise ConnectRefused(f"access was not granted ({params['error']}); nothing was connected")
    client = client_for(request.app.state.settings, provider)
    grant = exchange(client, str(request.url), params["state"], pending)
    if pending.reconnect:
        same_account(reconnect_target(request, provider, user, pending.reconnect), grant)
    connection_id = store_grant(request, grant)
    state = request.app.state
    request_syncs(state.sync_engine, state.celery, connection_id, pending.capabilities, trigger="connect")
    return connection_id


def same_account(connection: Connection, grant: Grant) -> None:
    """A reconnect must sign in to the connection's own account; anything else changes nothing.

    The other account's fresh tokens are dropped, not revoked: a provider's revoke may end the whole grant of that
    account to this app, which would break a connection the user may already have for it.
    """
    if grant.account.account_id == connection.provider_account_id:
        return
    provider = PROVIDERS[connection.auth_provider].display_name
    signed_in = grant.account.email or f"another {provider} account"
    raise ConnectRefused(
        f"You are signed in to {provider} as {signed_in}, but this connection is "
        f"{connection.account_email or 'another account'}. Nothing was changed: sign in to {provider} as "
        f"{connection.account_email or 'that account'} and reconnect again.",
        409,
    )


def exchange(client: OAuthClient, callback_url: str, state: str, pending: PendingGrant) -> Grant:
    """Tokens for the callback's code and the account they belong to; tokens issued for an account the provider
    cannot name in a form the hub can keep are revoked, since nothing will ever use them."""
    try:
        tokens = client.exchange(callback_url, state, pending.code_verifier)
    except GrantRefused as exc:
        raise nothing_connected(exc) from exc
    try:
        account = client.account(tokens.access_token)
    except GrantRefused as exc:
        client.discard(tokens.refresh_token, tokens.access_token)
        raise nothing_connected(exc) from exc
    return Grant(account, tokens, pending)


def nothing_connected(exc: GrantRefused) -> ConnectRefused:
    return ConnectRefused(f"{exc} Nothing was connected: start again from the settings page.", exc.status)


def store_grant(request: Request, grant: Grant) -> uuid.UUID:
    rt = request.app.state
    vault = Vault(key_ring(rt.settings.vault))
    pending, tokens = grant.pending, grant.tokens
    with transaction(rt.sessions) as session:
        connection = account_connection(
            session, pending.workspace_id, pending.user_id, pending.provider, grant.account.account_id
        )
        action = "connection.reconnected"
        offline = bool(tokens.refresh_token) or not PROVIDERS[pending.provider].issues_refresh_tokens
        if connection is None:
            if not offline:
                raise ConnectRefused("the provider did not grant offline access (no refresh token); try again")
            connection = new_connection(
                session,
                rt.settings,
                pending.workspace_id,
                pending.user_id,
                pending.provider,
                grant.account.account_id,
                pending.capabilities,
            )
            action = "connection.created"
        if not offline and vault.read(session, connection, REFRESH) is None:
            raise ConnectRefused("the provider did not grant offline access (no refresh token); try again")
        connection.account_email = grant.account.email
        before = set(connection.granted_scopes)
        connection.granted_scopes = sorted(tokens.scopes)
        connection.capabilities = sorted({*connection.capabilities, *pending.capabilities})
        if connection.status != ConnectionStatus.PAUSED.value:  # a reconnect does not undo the user's pause
            connection.move_to(ConnectionStatus.ACTIVE)
        connection.refreshed_at, connection.refresh_failures, connection.refresh_retry_at = utcnow(), 0, None
        vault.store(session, connection, ACCESS, tokens.access_token, tokens.expires_at)
        if tokens.refresh_token:
            vault.store(session, connection, REFRESH, tokens.refresh_token)
        audit(session, connection, pending.user_id, action, scopes=len(connection.granted_scopes))
        if action == "connection.reconnected":
            audit_grant_change(session, connection, pending.user_id, before)
        return connection.id
