"""Connections: one per account (found or added when connecting); disconnecting: revoke at the provider, erase
secrets (credentials, cursors), keep or delete the data."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery
from redis.lock import Lock
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from connectors.registry import capabilities_of, default_sharing
from core.db import Base, transaction
from core.holdings import Role, check_database, declared, erase_connection
from core.identity import Principal
from core.models import Connection, ConnectionStatus, Sharing, audit, utcnow
from core.settings import Settings
from hub.errors import Conflict, NotFound
from oauth.client import client_for
from sync import resources, schedule
from sync.checkpoints import stream_key
from sync.chooser import undo_all
from sync.dispatch import hand_over_unsent
from sync.engine import SyncEngine
from sync.models import ACTIVE_STATUSES, NO_RESOURCE, RunStatus, SyncRun
from sync.retention import ERASED_WITH_CONNECTION, cancelled
from token_vault.fresh import ACCESS, REFRESH
from token_vault.models import SealedCredential
from token_vault.vault import Vault, key_ring

log = logging.getLogger(__name__)


ERASED_AT_DISCONNECT = {Role.SECRET, Role.SCRATCH}


def account_connection(
    session: Session, workspace_id: str, user_id: str, provider: str, account_id: str, lock: bool = False
) -> Connection | None:
    """The user's connection to this provider account, if they have one (one connection per account); `lock`
    holds its row for the transaction."""
    query = select(Connection).where(
        Connection.workspace_id == workspace_id,
        Connection.user_id == user_id,
        Connection.auth_provider == provider,
        Connection.provider_account_id == account_id,
    )
    return session.scalar(query.with_for_update() if lock else query)


def new_connection(
    session: Session,
    settings: Settings,
    workspace_id: str,
    user_id: str,
    provider: str,
    account_id: str,
    capabilities: Iterable[str],
) -> Connection:
    """A new connection to a provider account, shared as its connectors' default says, flushed (it has its id)."""
    connection = Connection(
        workspace_id=workspace_id,
        user_id=user_id,
        auth_provider=provider,
        provider_account_id=account_id,
        granted_scopes=[],
        capabilities=[],
        sharing=default_sharing(settings, provider, capabilities).value,
    )
    session.add(connection)
    session.flush()
    return connection


GRANT_LOCK_PREFIX = "synchub:grant:"
GRANT_LOCK_SECONDS = 60.0


def mine(session: Session, user: Principal) -> list[Connection]:
    """The signed-in user's own connections in their workspace, oldest first."""
    return list(
        session.scalars(
            select(Connection)
            .where(Connection.workspace_id == user.workspace_id, Connection.user_id == user.user_id)
            .order_by(Connection.created_at)
        ).all()
    )


def owned(
    session: Session, connection_id: uuid.UUID, workspace_id: str, user_id: str, lock: bool = False
) -> Connection:
    """The user's own connection in their workspace (404 otherwise); `lock` takes its row FOR NO KEY UPDATE."""
    connection = session.get(
        Connection, connection_id, with_for_update={"key_share": True} if lock else None, populate_existing=lock
    )
    if connection is None or connection.workspace_id != workspace_id or connection.user_id != user_id:
        raise NotFound(f"connection {connection_id}")
    return connection


def revoke_at_provider(settings: Settings, vault: Vault, session: Session, connection: Connection) -> bool:
    secret = vault.read(session, connection, REFRESH) or vault.read(session, connection, ACCESS)
    if secret is None:
        return True
    try:
        return client_for(settings, connection.auth_provider).revoke(secret.value)
    except Exception as exc:
        log.warning("revoke failed", extra={"connection_id": str(connection.id), "error_type": type(exc).__name__})
        return False


def grant_holders(session: Session, connection: Connection) -> int:
    """Other connections, in any workspace, still holding a grant of the same account at the same auth provider
    (the hub has one OAuth client per auth provider): not disconnected, with a token stored."""
    held = exists().where(SealedCredential.connection_id == Connection.id, SealedCredential.kind.in_([ACCESS, REFRESH]))
    return (
        session.scalar(
            select(func.count())
            .select_from(Connection)
            .where(
                Connection.auth_provider == connection.auth_provider,
                Connection.provider_account_id == connection.provider_account_id,
                Connection.id != connection.id,
                Connection.status != ConnectionStatus.DISCONNECTED.value,
                held,
            )
        )
        or 0
    )


def grant_lock(client: redis.Redis, connection: Connection) -> Lock:
    """The lock of one account's grant at its auth provider, held from deciding whether to revoke until this
    connection's tokens are erased: of two disconnects of the same account, the second sees the first's outcome."""
    key = f"{GRANT_LOCK_PREFIX}{connection.auth_provider}:{connection.provider_account_id}"
    lock: Lock = client.lock(key, timeout=GRANT_LOCK_SECONDS, blocking_timeout=GRANT_LOCK_SECONDS)
    return lock


def disconnect(
    sync_engine: SyncEngine, connection_id: uuid.UUID, user_id: str, workspace_id: str, delete_data: bool
) -> dict[str, Any]:
    """Undo every resource's subscription and revoke the grant at the provider (best effort, both said in the
    answer), then cancel the runs, mark the connection disconnected and erase its secrets, and its records if
    asked, in one transaction. A provider's revoke ends the account's whole grant to the app, so while another
    connection to the same account holds it, only this connection's credentials are deleted (said in the answer)."""
    settings, sessions = sync_engine.settings, sync_engine.sessions
    vault = Vault(key_ring(settings.vault))
    with sessions() as session:
        check_database(session, Base.metadata)  # an erase that could not finish must not begin with a revoke
        owned(session, connection_id, workspace_id, user_id)
    undone = undo_all(sync_engine, connection_id)
    with sessions() as session:
        lock = grant_lock(sync_engine.redis, owned(session, connection_id, workspace_id, user_id))
    if not lock.acquire():
        raise Conflict("another disconnect of this account is under way; try again in a minute")
    try:
        return revoke_and_erase(sync_engine, vault, connection_id, user_id, workspace_id, delete_data, undone)
    finally:
        if lock.owned():
            lock.release()


def revoke_and_erase(
    sync_engine: SyncEngine,
    vault: Vault,
    connection_id: uuid.UUID,
    user_id: str,
    workspace_id: str,
    delete_data: bool,
    undone: bool | None,
) -> dict[str, Any]:
    settings, sessions = sync_engine.settings, sync_engine.sessions
    with sessions() as session:
        connection = owned(session, connection_id, workspace_id, user_id)
        shared = grant_holders(session, connection) > 0
        revoked = False if shared else revoke_at_provider(settings, vault, session, connection)
    with transaction(sessions) as session:
        # The order of locks is the point. Active runs first: a worker writing a page holds its run's lock, so the
        # erase below starts after that page committed and sees its rows; a worker that comes next finds its run
        # cancelled and writes nothing. Then the connection, moved to disconnected before anything is erased: a
        # secret kept or a token stored meanwhile waits for this transaction, then finds the connection gone.
        # (NO KEY UPDATE: a page's inserts take KEY SHARE on the connection, which this must not block.)
        for run in session.scalars(
            select(SyncRun)
            .where(SyncRun.connection_id == connection_id, SyncRun.status.in_(list(ACTIVE_STATUSES)))
            .with_for_update()
        ):
            run.move_to(RunStatus.CANCELLED, "the account was disconnected")
        connection = owned(session, connection_id, workspace_id, user_id, lock=True)
        if connection.status != ConnectionStatus.DISCONNECTED.value:
            connection.move_to(ConnectionStatus.DISCONNECTED, status_reason(revoked, shared))
        session.flush()
        roles = {*ERASED_AT_DISCONNECT, Role.RECORDS} if delete_data else ERASED_AT_DISCONNECT
        erased = erase_connection(session, Base.metadata, connection.id, roles)
        deleted = counted(erased, Role.RECORDS)
        audit(
            session,
            connection,
            user_id,
            "connection.disconnected",
            revoked_at_provider=revoked,
            grant_in_use_elsewhere=shared,
            subscriptions_undone=undone,
            secrets_erased=counted(erased, Role.SECRET),
            records_deleted=deleted,
        )
    return {
        "id": str(connection_id),
        "status": "disconnected",
        "revoked_at_provider": revoked,
        "grant_in_use_elsewhere": shared,
        "credentials_deleted": True,
        "subscriptions_undone": undone,
        "records_deleted": deleted,
    }


def status_reason(revoked: bool, shared: bool) -> str | None:
    if shared:
        return "its credentials were deleted; the grant was not revoked, another connection to the account uses it"
    return None if revoked else "the provider did not confirm revocation"


def counted(erased: dict[str, int], role: Role) -> int:
    """Rows of `role` an erase removed, each once (rows of tables owned through another table's rows are not)."""
    holdings = declared(Base.metadata)
    return sum(n for name, n in erased.items() if holdings[name].role == role and holdings[name].parent is None)


def request_syncs(
    sync_engine: SyncEngine,
    celery: Celery,
    connection_id: uuid.UUID,
    capabilities: Iterable[str],
    trigger: str,
    resource: str | None = None,
) -> dict[str, str | None]:
    """Queue a run per stream (an active run is reused) and hand it to the workers unless its message is already
    out; None where gated. A capability with resources has a stream per selected resource, named
    `capability/<resource id>`; `resource` picks one."""
    runs: dict[str, str | None] = {}
    for capability in capabilities:
        keys = [resource] if resource is not None else sync_engine.streams(connection_id, capability)
        for key in keys or [NO_RESOURCE]:
            run_id = sync_engine.request(connection_id, capability, trigger, key)
            runs[stream_key(capability, key)] = str(run_id) if run_id else None
            if run_id is not None:
                hand_over_unsent(sync_engine.sessions, celery, run_id)
    return runs


def set_paused(
    sessions: sessionmaker[Session],
    connection_id: uuid.UUID,
    paused: bool,
    actor: str,
    owner: tuple[str, str] | None = None,
) -> tuple[Connection, bool]:
    """Pause (no new runs, a running one stops after its page, no provider calls) or resume a connection.

    Returns the connection and whether it changed; `owner` (workspace, user) limits it to that user's own.
    Pausing or resuming twice is a no-op; a connection that needs reconnecting or is disconnected refuses.
    """
    with transaction(sessions) as session:
        connection = owned(session, connection_id, *owner) if owner else session.get(Connection, connection_id)
        if connection is None:
            raise NotFound(f"connection {connection_id}")
        wanted, source = (
            (ConnectionStatus.PAUSED, ConnectionStatus.ACTIVE)
            if paused
            else (ConnectionStatus.ACTIVE, ConnectionStatus.PAUSED)
        )
        if connection.status == wanted.value:
            session.expunge(connection)
            return connection, False
        if not paused and cancelled(session, connection.workspace_id) is not None:
            raise Conflict("the workspace is cancelled: its connections stay paused unless it is reactivated")
        if connection.status != source.value:
            raise Conflict(
                f"the connection is {connection.status.replace('_', ' ')}; "
                + (
                    "reconnect it first"
                    if connection.status == ConnectionStatus.NEEDS_REAUTH.value
                    else "connect it again"
                )
            )
        connection.move_to(wanted, "paused by its owner" if paused else None)
        audit(session, connection, actor, "connection.paused" if paused else "connection.resumed")
        session.flush()
        session.expunge(connection)
        return connection, True


def pause_or_resume(
    sync_engine: SyncEngine,
    celery: Celery,
    connection_id: uuid.UUID,
    paused: bool,
    actor: str,
    owner: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The API's and the CLI's pause/resume: a resumed connection syncs at once, from its checkpoints."""
    connection, changed = set_paused(sync_engine.sessions, connection_id, paused, actor, owner)
    runs: dict[str, str | None] = {}
    if changed and not paused:
        runs = request_syncs(sync_engine, celery, connection.id, connection.capabilities, trigger="resume")
    return {"id": str(connection.id), "status": connection.status, "changed": changed, "runs": runs}


def set_interval(
    settings: Settings,
    sessions: sessionmaker[Session],
    connection_id: uuid.UUID,
    capability: str,
    seconds: int | None,
    owner: tuple[str, str],
) -> dict[str, Any]:
    """A connection's own poll interval for one capability (None returns to the deployment's)."""
    with transaction(sessions) as session:
        connection = owned(session, connection_id, *owner)
        found = capabilities_of(settings, connection.auth_provider).get(capability)
        if found is None or capability not in connection.capabilities:
            raise NotFound(f"capability {capability} of connection {connection_id}")
        rows = [
            schedule.ensure(session, settings, connection, capability, key)
            for key in resources.keys(session, connection.id, found[1])
        ]
        if not rows:
            raise Conflict("choose what to sync first: this capability has no selected resource")
        for row in rows:
            assert row is not None
            row.interval_seconds = seconds
            effective = schedule.interval_seconds(settings, found[0], found[1], row)
            row.next_run_at = min(row.next_run_at, utcnow() + schedule.jittered(settings, effective))
        audit(session, connection, owner[1], "schedule.changed", capability=capability, interval_seconds=seconds)
        soonest = min(row.next_run_at for row in rows if row is not None)
        return {"capability": capability, "interval_seconds": effective, "next_run_at": soonest.isoformat()}


def set_sharing(
    sessions: sessionmaker[Session], connection_id: uuid.UUID, sharing: Sharing, owner: tuple[str, str]
) -> str:
    """The owner's choice of who reads the connection's records (only them, or everyone in the workspace);
    choosing what it already is changes nothing and records nothing."""
    with transaction(sessions) as session:
        connection = owned(session, connection_id, *owner, lock=True)
        if connection.sharing != sharing.value:
            connection.sharing = sharing.value
            audit(session, connection, owner[1], "connection.sharing_changed", sharing=sharing.value)
        return connection.sharing


def remove(sessions: sessionmaker[Session], connection_id: uuid.UUID, owner: tuple[str, str]) -> dict[str, Any]:
    """Take a disconnected connection off the list: erase everything it kept (records, history) and the
    connection itself, as the retention window would at its end. A connection not disconnected refuses (409)."""
    with transaction(sessions) as session:
        connection = owned(session, connection_id, *owner, lock=True)
        if connection.status != ConnectionStatus.DISCONNECTED.value:
            raise Conflict("disconnect the account first; only a disconnected account can be removed")
        erased = erase_connection(session, Base.metadata, connection.id, ERASED_WITH_CONNECTION)
        audit(session, connection, owner[1], "connection.removed", records_deleted=counted(erased, Role.RECORDS))
        session.delete(connection)
        return {"id": str(connection_id), "removed": True, "records_deleted": counted(erased, Role.RECORDS)}
