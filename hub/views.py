"""What the page and the API show about a connection: capability states and the last run, in plain words."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.registry import capabilities_of
from core.models import Connection, ConnectionStatus, utcnow
from core.scopes import missing
from core.settings import Settings
from crm.kinds import counts as record_counts
from crm.kinds import kind
from oauth.providers import PROVIDERS
from sync import resources
from sync.models import RunStatus, Schedule, SyncRun
from sync.schedule import interval_seconds
from token_vault.fresh import ACCESS
from token_vault.models import SealedCredential

RECONNECT_SOON = timedelta(days=7)
"""How early a connection whose access cannot be renewed (no refresh token) asks to be reconnected."""

STATE_WORDS = {
    "ok": "synced",
    "grant_access": "grant access",
    "failed": "failed",
    "paused": "paused",
    "needs_reauth": "reconnect",
}


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


def connection_view(session: Session, settings: Settings, connection: Connection) -> dict[str, Any]:
    offered = capabilities_of(settings, connection.auth_provider)
    records = record_counts(session, connection.id, [capability.record_kind for _spec, capability in offered.values()])
    capabilities = []
    for name, (_spec, capability) in offered.items():
        lacking = missing(connection.granted_scopes, capability.required)
        granted = name in connection.capabilities and not lacking
        run = last_run(session, connection.id, name)
        state = capability_state(connection, granted, run)
        plan = session.scalars(
            select(Schedule)
            .where(Schedule.connection_id == connection.id, Schedule.capability == name)
            .order_by(Schedule.next_run_at)
            .limit(1)
        ).first()
        capabilities.append(
            {
                "name": name,
                "display_name": capability.display_name,
                "state": state,
                "state_words": STATE_WORDS[state],
                "missing_scopes": [sorted(group) for group in lacking],
                "last_run": run_view(run),
                "schedule": schedule_view(settings, connection, name, plan),
                "records": {"kind": kind(capability.record_kind).segment},
                "chooser": chooser_view(session, connection, name, capability.resource_noun)
                if capability.resources is not None and granted
                else None,
            }
        )
    return {
        "id": str(connection.id),
        "auth_provider": connection.auth_provider,
        "account_email": connection.account_email,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "granted_scopes": sorted(connection.granted_scopes),
        "sharing": connection.sharing,
        "notices": [notice] if (notice := access_ends(session, connection)) else [],
        "capabilities": capabilities,
        "records": records,
        "created_at": connection.created_at.isoformat(),
    }
