"""What the page and the API show about a connection: capability states and the last run, in plain words."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.registry import capabilities_of
from core.models import Connection, ConnectionStatus, utcnow
from core.scopes import missing
from core.settings import Settings
from crm.kinds import counts as record_counts
from crm.kinds import kind
from oauth.providers import FORM_PROVIDERS, PROVIDERS, display_name
from sync import resources
from sync.models import ACTIVE_STATUSES, RunStatus, Schedule, SyncRun
from sync.schedule import interval_seconds
from token_vault.fresh import ACCESS
from token_vault.models import SealedCredential

RECONNECT_SOON = timedelta(days=7)
"""How early a connection whose access cannot be renewed (no refresh token) asks to be reconnected."""

STATE_WORDS = {
    "ok": "working",
    "grant_access": "needs access",
    "failed": "failed",
    "paused": "paused",
    "needs_reauth": "needs reconnecting",
}
"""A capability's state in plain words (the page shows the pill; the state is the API's vocabulary)."""

PILL_WORDS = {  # most urgent first
    "disconnected": "Disconnected",
    "paused": "Paused",
    "attention": "Needs your attention",
    "syncing": "Syncing",
    "up_to_date": "Up to date",
}
ATTENTION_STATES = ("needs_reauth", "grant_access", "failed")


def pill(status: str, capabilities: Iterable[tuple[str, bool]]) -> str:
    """The status pill, derived, never stored: of one capability (one `(state, running)` pair) or of an account
    (its enabled capabilities' pairs: the most urgent of their pills; a capability the user never asked for is
    offered with "grant access", and has no pill). Disconnected and paused come from the
    connection's status; needs_reauth, grant_access or failed need the user's attention; a running run is
    syncing; otherwise everything is up to date."""
    if status == ConnectionStatus.DISCONNECTED.value:
        return "disconnected"
    if status == ConnectionStatus.PAUSED.value:
        return "paused"
    if status == ConnectionStatus.NEEDS_REAUTH.value:
        return "attention"
    found = list(capabilities)
    if any(state in ATTENTION_STATES for state, _running in found):
        return "attention"
    if any(state == "paused" for state, _running in found):
        return "paused"
    return "syncing" if any(running for _state, running in found) else "up_to_date"


def pill_view(key: str, action: dict[str, str] | None = None) -> dict[str, Any]:
    return {"key": key, "words": PILL_WORDS[key], "action": action}


def action_for(connection: Connection, state: str, capability: str, display: str) -> dict[str, str] | None:
    """What the user does about a capability that needs their attention: the button's label, where it goes, and
    one sentence saying why."""
    provider = display_name(connection.auth_provider)
    base = f"/connect/{connection.auth_provider}"
    if state == "needs_reauth" or connection.status == ConnectionStatus.NEEDS_REAUTH.value:
        form = FORM_PROVIDERS.get(connection.auth_provider)
        why = (
            form.reconnect_prompt
            if form is not None
            else f"{provider} no longer accepts synchub's access to this account (the password changed or the access "
            "was removed): sign in again and syncing goes on where it stopped."
        )
        return {"kind": "reconnect", "label": "Reconnect", "href": f"{base}?reconnect={connection.id}", "why": why}
    if state == "grant_access":
        return {
            "kind": "grant_access",
            "label": "Grant access",
            "href": f"{base}?{urlencode({'capabilities': capability, 'reconnect': str(connection.id)})}",
            "why": f"{provider} has not given synchub permission to read your {display.lower()}: granting access asks "
            f"{provider} for that permission only.",
        }
    if state == "failed":
        return {
            "kind": "sync_now",
            "label": "Sync now",
            "href": f"/connections/{connection.id}/capabilities/{capability}/sync",
            "why": "The last sync failed even after retrying: synchub tries again at the next scheduled sync, or now "
            "if you press Sync now.",
        }
    return None


def last_run(
    session: Session, connection_id: uuid.UUID, capability: str, resource: str | None = None
) -> SyncRun | None:
    """The stream's last run; without `resource`, the last of any of the capability's streams."""
    query = select(SyncRun).where(SyncRun.connection_id == connection_id, SyncRun.capability == capability)
    if resource is not None:
        query = query.where(SyncRun.resource == resource)
    return session.scalars(query.order_by(SyncRun.created_at.desc()).limit(1)).first()


def run_view(run: SyncRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": str(run.id),
        "status": run.status,
        "trigger": run.trigger,
        "full_sync": run.full_sync,
        "counts": {"created": run.records_created, "updated": run.records_updated, "deleted": run.records_deleted},
        "suppressed": run.records_suppressed,  # records skipped: they carry an address the workspace had forgotten
        "api_calls": run.api_calls,
        "progress": {"done": run.progress_done, "total": run.progress_total},
        "error": run.error,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def schedule_view(
    settings: Settings, connection: Connection, name: str, plan: Schedule | None
) -> dict[str, Any] | None:
    found = capabilities_of(settings, connection.auth_provider).get(name)
    if found is None:
        return None
    return {
        "interval_seconds": interval_seconds(settings, found[0], found[1], plan),
        "next_run_at": plan.next_run_at.isoformat() if plan and connection.status == "active" else None,
        "failures_in_a_row": plan.failures if plan else 0,
        "last_success_at": plan.last_success_at.isoformat() if plan and plan.last_success_at else None,
    }


def capability_state(connection: Connection, granted: bool, run: SyncRun | None) -> str:
    if connection.status in (ConnectionStatus.NEEDS_REAUTH.value, ConnectionStatus.PAUSED.value):
        return connection.status
    if not granted:
        return "grant_access"
    if run is not None and run.status == RunStatus.FAILED.value:
        return "failed"
    return "ok"


def access_ends(session: Session, connection: Connection) -> dict[str, Any] | None:
    """The notice "reconnect soon" when the provider issues no refresh token and the connection's access (its
    token, or its data access where the provider says it ends first) ends within `RECONNECT_SOON`: a notice, not a
    status, since everything still works until then."""
    config = PROVIDERS.get(connection.auth_provider)
    if config is None or config.issues_refresh_tokens or connection.status != ConnectionStatus.ACTIVE.value:
        return None
    ends = session.scalar(
        select(SealedCredential.expires_at).where(
            SealedCredential.connection_id == connection.id, SealedCredential.kind == ACCESS
        )
    )
    if ends is None or ends - utcnow() > RECONNECT_SOON:
        return None
    return {"notice": "reconnect_soon", "words": "reconnect soon", "access_ends_at": ends.isoformat()}


def chooser_view(session: Session, connection: Connection, capability: str, noun: str) -> dict[str, Any]:
    """What the page says of a capability's resources: their noun ("Pages") and the ones selected, by name."""
    rows = resources.listed(session, connection.id, capability)
    return {"noun": noun, "selected": [row.display_name for row in rows if resources.syncs(row)]}


def active_run(session: Session, connection_id: uuid.UUID, capability: str) -> SyncRun | None:
    """The capability's run that is working now (queued, running or waiting), the oldest if several streams are."""
    return session.scalars(
        select(SyncRun)
        .where(
            SyncRun.connection_id == connection_id,
            SyncRun.capability == capability,
            SyncRun.status.in_([status.value for status in ACTIVE_STATUSES]),
        )
        .order_by(SyncRun.created_at)
        .limit(1)
    ).first()


def error_view(connection: Connection, run: SyncRun | None, action: dict[str, str] | None) -> dict[str, Any]:
    """The last error in plain words, with what to do about it."""
    if connection.status == ConnectionStatus.NEEDS_REAUTH.value and connection.status_reason:
        words = connection.status_reason
    else:
        words = (run.error if run is not None and run.error else "") or ""
    for jargon in ("reconnect needed: ", "grant access: "):
        words = words.removeprefix(jargon)
    return {"words": words[:1].upper() + words[1:], "what_to_do": action["why"] if action else None}


def connection_view(session: Session, settings: Settings, connection: Connection) -> dict[str, Any]:
    offered = capabilities_of(settings, connection.auth_provider)
    records = record_counts(session, connection.id, [capability.record_kind for _spec, capability in offered.values()])
    capabilities = []
    for name, (_spec, capability) in offered.items():
        lacking = missing(connection.granted_scopes, capability.required)
        granted = name in connection.capabilities and not lacking
        run = last_run(session, connection.id, name)
        state = capability_state(connection, granted, run)
        working = active_run(session, connection.id, name) if connection.status == "active" else None
        plan = session.scalars(
            select(Schedule)
            .where(Schedule.connection_id == connection.id, Schedule.capability == name)
            .order_by(Schedule.next_run_at)
            .limit(1)
        ).first()
        enabled = name in connection.capabilities
        key = pill(connection.status, [(state, working is not None)])
        action = action_for(connection, state, name, capability.display_name) if key == "attention" else None
        offer = (
            action_for(connection, "grant_access", name, capability.display_name)
            if not enabled and connection.status == ConnectionStatus.ACTIVE.value
            else None
        )
        capabilities.append(
            {
                "name": name,
                "display_name": capability.display_name,
                "enabled": enabled,
                "state": state,
                "state_words": STATE_WORDS[state],
                "pill": pill_view(key, action) if enabled else None,
                "offer": offer,
                "missing_scopes": [sorted(group) for group in lacking],
                "last_run": run_view(run),
                "current_run": run_view(working),
                "last_error": error_view(connection, run, action) if enabled and key == "attention" else None,
                "schedule": schedule_view(settings, connection, name, plan),
                "records": {"kind": kind(capability.record_kind).segment},
                "chooser": chooser_view(session, connection, name, capability.resource_noun)
                if capability.resources is not None and granted
                else None,
            }
        )
    key = pill(connection.status, [(c["state"], c["current_run"] is not None) for c in capabilities if c["enabled"]])
    plans = [c["schedule"] for c in capabilities if c["schedule"]]
    urgent = next((c for c in capabilities if c["pill"] and c["pill"]["key"] == key), None)
    if connection.status == ConnectionStatus.NEEDS_REAUTH.value:  # the account's, whatever its capabilities
        action = action_for(connection, ConnectionStatus.NEEDS_REAUTH.value, "", "")
        urgent = {"pill": {"action": action}, "last_error": error_view(connection, None, action)}
    return {
        "id": str(connection.id),
        "auth_provider": connection.auth_provider,
        "account_email": connection.account_email,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "pill": pill_view(key, urgent["pill"]["action"] if urgent else None),
        "last_error": urgent["last_error"] if urgent else None,
        "last_sync_at": max((p["last_success_at"] for p in plans if p["last_success_at"]), default=None),
        "next_sync_at": min((p["next_run_at"] for p in plans if p["next_run_at"]), default=None),
        "granted_scopes": sorted(connection.granted_scopes),
        "sharing": connection.sharing,
        "notices": [notice] if (notice := access_ends(session, connection)) else [],
        "capabilities": capabilities,
        "records": records,
        "created_at": connection.created_at.isoformat(),
        "disconnected_at": connection.disconnected_at.isoformat() if connection.disconnected_at else None,
    }
