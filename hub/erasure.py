"""Erase a user or one of their connections, and forget a person by address: the API's and the CLI's.

An erase deletes every row any table holds for the user's connections (the holdings registry's every role), and
the user's own audit entries; it leaves one audit entry that names nobody in clear: the actor is `privacy`, the
subject a keyed hash of (workspace, user) that only a holder of the hash key can match to a user. Provider calls
that failed are owed (sealed) and retried by beat; the answer and the audit entry say which.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select

from core.db import transaction
from core.models import AuditEvent, Connection, audit_workspace
from crm.suppression import forget_person, keyed_hex, suppress
from hub.connections import owned
from hub.errors import Conflict, NotFound
from sync.engine import SyncEngine
from sync.erasure import Erased, GrantBusy, erase_one
from sync.models import ConnectionResource
from token_vault.vault import key_ring
from webhooks.inbox import FAILED, IGNORED, PROCESSED
from webhooks.models import WebhookDelivery


def subject(workspace_id: str, user_id: str) -> str:
    """How the audit log names an erased user: a keyed hash, never the id."""
    return keyed_hex(f"{workspace_id}\x1f{user_id}")


def _erase(sync_engine: SyncEngine, connection_ids: list[uuid.UUID]) -> list[Erased]:
    ring = key_ring(sync_engine.settings.vault)
    erased: list[Erased] = []
    for connection_id in connection_ids:
        try:
            done = erase_one(sync_engine, ring, connection_id)
        except GrantBusy as exc:
            raise Conflict(str(exc)) from exc
        if done is not None:
            erased.append(done)
            forget_deliveries(sync_engine, done.resources)
    return erased


def forget_deliveries(sync_engine: SyncEngine, route_keys: tuple[str, ...]) -> int:
    """Delete the finished webhook deliveries that named an erased connection's resources (a calendar's id can be
    its owner's address) unless another connection still selects the resource: a late redelivery is then ignored,
    as for any resource no connection selects."""
    if not route_keys:
        return 0
    still = select(ConnectionResource.external_id).where(
        ConnectionResource.external_id.in_(route_keys), ConnectionResource.selected
    )
    with transaction(sync_engine.sessions) as session:
        result = session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.route_key.in_(route_keys),
                WebhookDelivery.route_key.not_in(still),
                WebhookDelivery.status.in_([PROCESSED, IGNORED, FAILED]),
            )
        )
    return int(getattr(result, "rowcount", 0) or 0)


def _answer(done: list[Erased], **extra: Any) -> dict[str, Any]:
    pending = [e.pending_id for e in done if e.pending_id]
    return {
        **extra,
        "connections": [e.as_dict() for e in done],
        "rows_deleted": sum(e.rows_deleted for e in done),
        "provider_undo": "pending" if pending else "done",
        "provider_undo_note": (
            "the local data is deleted; a provider did not answer, so its revoke or unsubscribe is retried in the "
            "background until it lands"
            if pending
            else "every revoke, unsubscribe and channel stop was confirmed"
        ),
    }


def erase_user(sync_engine: SyncEngine, workspace_id: str, user_id: str) -> dict[str, Any]:
    """Erase every connection of the user in the workspace, one transaction each, then the user's audit entries;
    one audit entry, naming the user by keyed hash only, says it happened."""
    with sync_engine.sessions() as session:
        ids = list(
            session.scalars(
                select(Connection.id).where(Connection.workspace_id == workspace_id, Connection.user_id == user_id)
            )
        )
    erased = _erase(sync_engine, ids)
    answer = _answer(erased, scope="user")
    with transaction(sync_engine.sessions) as session:
        session.execute(delete(AuditEvent).where(AuditEvent.workspace_id == workspace_id, AuditEvent.actor == user_id))
        _audit(session, workspace_id, "privacy.user_erased", subject(workspace_id, user_id), erased)
    return answer


def erase_connection(
    sync_engine: SyncEngine, workspace_id: str, user_id: str, connection_id: uuid.UUID
) -> dict[str, Any]:
    """Erase one of the user's connections (404 for anyone else's)."""
    with sync_engine.sessions() as session:
        owned(session, connection_id, workspace_id, user_id)
    erased = _erase(sync_engine, [connection_id])
    if not erased:
        raise NotFound(f"connection {connection_id}")
    with transaction(sync_engine.sessions) as session:
        _audit(session, workspace_id, "privacy.connection_erased", subject(workspace_id, user_id), erased)
    return _answer(erased, scope="connection")


def _audit(session: Any, workspace_id: str, action: str, who: str, erased: list[Erased]) -> None:
    audit_workspace(
        session,
        workspace_id,
        "privacy",
        action,
        subject=who,
        connections=len(erased),
        rows_deleted=sum(e.rows_deleted for e in erased),
        revoked_at_provider=sum(e.revoked_at_provider for e in erased),
        resources_undone=sum(e.resources_undone for e in erased),
        provider_undo="pending" if any(e.pending_id for e in erased) else "done",
        pending_ids=[e.pending_id for e in erased if e.pending_id],
    )


def forget(sync_engine: SyncEngine, workspace_id: str, email: str) -> dict[str, Any]:
    """Delete a person from every synced record of the workspace and put their address on its suppression list (a
    keyed hash), in one transaction; the next syncs skip records that carry it and count them as suppressed."""
    if "@" not in email or len(email.strip()) > 320:
        raise ValueError("an email address is needed")
    with transaction(sync_engine.sessions) as session:
        added = suppress(session, workspace_id, email)
        deleted = forget_person(session, workspace_id, email)
        audit_workspace(
            session, workspace_id, "service", "privacy.person_forgotten", already_listed=not added, **deleted
        )
    return {"workspace_id": workspace_id, "suppressed": True, "already_listed": not added, "deleted": deleted}
