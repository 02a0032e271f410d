"""Connecting an account by a form (a server URL, a username, an app password): the form as the auth provider
declares it, the check before anything is stored, and the connection with its secrets sealed in the vault."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse

from core.db import transaction
from core.identity import Principal
from core.models import Connection, ConnectionStatus, audit, utcnow
from core.settings import Settings
from hub.connections import account_connection, new_connection, request_syncs
from hub.pages import render
from hub.sessions import BrowserSession
from oauth.forms import CredentialsRefused, FormProviderConfig, Verified
from oauth.providers import FORM_PROVIDERS
from token_vault.vault import Vault, key_ring, secret_kind

if TYPE_CHECKING:
    from hub.connect import ConnectPlan

log = logging.getLogger(__name__)


def form_page(
    plan: ConnectPlan,
    settings: Settings,
    session: BrowserSession,
    values: Mapping[str, str],
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The provider's connect form; `values` fill its fields, secrets never (the password is typed every time)."""
    config = FORM_PROVIDERS[plan.provider]
    existing = plan.existing
    shown = dict(config.prefill(existing.provider_account_id, existing.account_email)) if existing else {}
    shown.update({name: value for name, value in config.shown(values).items() if value})
    keep = {"capabilities": ",".join(plan.wanted), **({"reconnect": str(existing.id)} if existing else {})}
    fields = [
        {
            "name": item.name,
            "label": item.label,
            "type": item.type,
            "placeholder": item.placeholder,
            "autocomplete": item.autocomplete,
            "help": item.help,
            "secret": item.secret,
            "value": "" if item.secret else shown.get(item.name, ""),
            "presets": [
                {
                    "label": p.label,
                    "value": p.value,
                    "href": f"/connect/{plan.provider}?" + urlencode({**keep, item.name: p.value}),
                }
                for p in item.presets
            ],
        }
        for item in config.fields
    ]
    page = render(
        "connect_form.html",
        session=session,
        form=config,
        slug=plan.provider,
        fields=fields,
        capabilities=[plan.available[c][1].display_name for c in plan.wanted],
        wanted=",".join(plan.wanted),
        reconnect=str(existing.id) if existing else "",
        account=existing.account_email if existing else None,
        error=error,
        note=config.note(settings),
    )
    return HTMLResponse(page, status_code=status)


def connect_by_form(request: Request, plan: ConnectPlan, user: Principal, submitted: Mapping[str, Any]) -> uuid.UUID:
    """Check the submitted values with the provider, then create or update the account's connection with its
    secrets sealed, and ask for its first syncs; raises CredentialsRefused (nothing stored) when the check fails."""
    config = FORM_PROVIDERS[plan.provider]
    rt = request.app.state
    try:
        verified = config.check(rt.settings, submitted)
        if plan.existing is not None and verified.account.account_id != plan.existing.provider_account_id:
            raise other_account(config, plan.existing)
    except CredentialsRefused as exc:
        log.info("connect by form refused", extra={"provider": plan.provider, "reason": exc.reason})
        raise
    connection_id = store_secrets(request, plan, user, verified)
    log.info("connected by form", extra={"provider": plan.provider, "connection_id": str(connection_id)})
    request_syncs(rt.sync_engine, rt.celery, connection_id, plan.wanted, trigger="connect")
    return connection_id


def other_account(config: FormProviderConfig, connection: Connection) -> CredentialsRefused:
    return CredentialsRefused(
        "other_account",
        f"Those details sign in to another {config.display_name} account than this connection's "
        f"({connection.account_email or connection.provider_account_id}). Nothing was changed.",
        409,
    )


def store_secrets(request: Request, plan: ConnectPlan, user: Principal, verified: Verified) -> uuid.UUID:
    """One connection per account: found by the provider account id the check reported, created if new; its
    secrets are sealed in place (a new app password replaces the old one), and a connection waiting for them is
    active again (a paused one stays paused)."""
    rt = request.app.state
    vault = Vault(key_ring(rt.settings.vault))
    account = verified.account
    requested = {scope for name in plan.wanted for scope in plan.available[name][1].requested_scopes}
    with transaction(rt.sessions) as session:
        connection = account_connection(
            session, user.workspace_id, user.user_id, plan.provider, account.account_id, lock=True
        )
        action = "connection.reconnected"
        if connection is None:
            connection = new_connection(
                session, rt.settings, user.workspace_id, user.user_id, plan.provider, account.account_id, plan.wanted
            )
            action = "connection.created"
        connection.account_email = account.email
        connection.granted_scopes = sorted({*connection.granted_scopes, *requested})  # the password grants them
        connection.capabilities = sorted({*connection.capabilities, *plan.wanted})
        if connection.status != ConnectionStatus.PAUSED.value:
            connection.move_to(ConnectionStatus.ACTIVE)
        connection.refreshed_at, connection.refresh_failures, connection.refresh_retry_at = utcnow(), 0, None
        for name, value in verified.secrets.items():
            vault.store(session, connection, secret_kind(name), value)
        audit(session, connection, user.user_id, action, secrets=len(verified.secrets))
        return connection.id
