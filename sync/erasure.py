"""What an erase owes the providers: undo what selecting set up (a Page's subscription, a calendar's channels) and
revoke the grant, from a plan read before the local erase, so the provider calls need nothing the erase deleted.

A plan the providers did not fully accept is kept, sealed whole (its tokens, account and resources are personal
data), in `privacy_pending_undos` until the last call lands; beat retries it with a doubling wait. The row names no
workspace, user or connection in clear, and goes once the provider confirmed."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Index, Integer, LargeBinary, String, Text, Uuid, delete, exists, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from connectors.base import OpenChannel, Resource, StreamContext
from core.db import Base, transaction
from core.errors import AuthRevoked, SecretMissing
from core.holdings import Owner, Role, check_database, erase_connection, holding
from core.logsafe import described
from core.models import AuditEvent, Connection, ConnectionStatus, UTCDateTime, audit_workspace, utcnow
from oauth.client import client_for
from sync import resources
from sync.chooser import held_elsewhere
from sync.models import ACTIVE_STATUSES, PushChannel, SyncRun
from token_vault.fresh import ACCESS, REFRESH
from token_vault.models import SealedCredential
from token_vault.sealing import Binding, KeyRing, SealError
from token_vault.vault import SECRET_PREFIX, credential_binding

log = logging.getLogger(__name__)
PLAN_KIND = "privacy:pending-undo"


class PendingUndo(Base):
    """A provider undo an erase still owes: the whole plan sealed (AAD binds it to this row), tried again at
    `next_attempt_at`."""

    __tablename__ = "privacy_pending_undos"
    __table_args__ = (
        Index("ix_privacy_pending_undos_next_attempt_at", "next_attempt_at"),
        holding(
            Owner.NOBODY,
            Role.NONE,
            reason="what an erase still owes a provider (a revoke, an unsubscribe, a channel stop) after the local "
            "data is gone: every id and token in it is sealed, nothing names the workspace, user or connection in "
            "clear, and the row is deleted when the provider confirmed",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    auth_provider: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[int] = mapped_column(Integer)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass
class Plan:
    """Everything the provider calls of one connection's erase need. `undo` holds one entry per selected resource
    with a lifecycle: its capability, the resource, and its live channels; `revoke` is False when another connection
    holds the same grant (a provider's revoke ends the account's whole grant to the app)."""

    workspace_id: str
    connection_id: str
    auth_provider: str
    provider_account_id: str
    access: str | None = None
    refresh: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    revoke: bool = True
    undo: list[dict[str, Any]] = field(default_factory=list)

    @property
    def owed(self) -> bool:
        return bool(self.undo) or (self.revoke and bool(self.refresh or self.access))

    def dumps(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def loads(cls, data: bytes) -> Plan:
        return cls(**json.loads(data))


@dataclass
class Outcome:
    undone: int = 0
    """Resources whose subscription or channels were undone at the provider."""
    revoked: bool | None = None
    """True once the provider confirmed the revoke; None when there was none to make (no token, or shared)."""
    error: str | None = None


def plan_for(engine: Any, session: Session, connection: Connection, ring: KeyRing) -> Plan:
    """Read what the provider calls need before the erase deletes it (the revoke is dropped while another
    connection holds the same grant)."""
    plan = Plan(connection.workspace_id, str(connection.id), connection.auth_provider, connection.provider_account_id)
    sealed = session.scalars(select(SealedCredential).where(SealedCredential.connection_id == connection.id)).all()
    for row in sealed:
        binding = credential_binding(connection.workspace_id, connection.id, row.kind)
        value = ring.open(row.sealed, binding).decode()
        if row.kind == ACCESS:
            plan.access = value
        elif row.kind == REFRESH:
            plan.refresh = value
        elif row.kind.startswith(SECRET_PREFIX):
            plan.secrets[row.kind.removeprefix(SECRET_PREFIX)] = value
    for capability in connection.capabilities:
        found = engine.capability(connection, capability)
        if found is None or found[1].lifecycle is None:
            continue
        for listed in resources.listed(session, connection.id, capability):
            if not listed.selected:
                continue
            if found[1].shared_at_provider and held_elsewhere(engine, connection, capability, listed):
                continue
            channels = session.scalars(
                select(PushChannel).where(
                    PushChannel.connection_id == connection.id,
                    PushChannel.capability == capability,
                    PushChannel.external_id == listed.external_id,
                    PushChannel.stopped_at.is_(None),
                )
            ).all()
            plan.undo.append(
                {
                    "capability": capability,
                    "resource": {
                        "external_id": listed.external_id,
                        "name": listed.display_name,
                        "detail": listed.detail,
                    },
                    "channels": [{"id": c.id, "provider_resource_id": c.provider_resource_id} for c in channels],
                }
            )
    return plan


@dataclass
class PlanCredentials:
    """`connectors.base.Credentials` from a plan: the tokens as read before the erase, refreshed once on a 401."""

    engine: Any
    plan: Plan

    def access_token(self) -> str:
        if self.plan.access:
            return self.plan.access
        return self.rejected("")

    def rejected(self, token: str) -> str:
        if not self.plan.refresh:
            raise AuthRevoked("the provider refused the access token and there is no refresh token")
        fresh = client_for(self.engine.settings, self.plan.auth_provider).refresh(self.plan.refresh)
        self.plan.access = fresh.access_token
        if fresh.refresh_token:
            self.plan.refresh = fresh.refresh_token
        return fresh.access_token

    def secret(self, name: str) -> str:
        if name not in self.plan.secrets:
            raise SecretMissing(name)
        return self.plan.secrets[name]

    def keep(self, name: str, value: str) -> None:
        self.plan.secrets[name] = value


@dataclass
class PlanChannels:
    """`connectors.base.Channels` over one plan entry's channels: stopping one takes it out of the plan."""

    entry: dict[str, Any]
    address: str

    def new(self) -> tuple[str, str]:
        raise RuntimeError("an erase opens no channel")

    def opened(self, channel_id: str, token: str, provider_resource_id: str | None, expires_at: Any) -> None:
        raise RuntimeError("an erase opens no channel")

    def live(self) -> list[OpenChannel]:
        return [OpenChannel(c["id"], c["provider_resource_id"], None) for c in self.entry["channels"]]

    def stopped(self, channel_id: str) -> None:
        self.entry["channels"] = [c for c in self.entry["channels"] if c["id"] != channel_id]


def _connection(plan: Plan) -> Connection:
    """A stand-in of the erased connection (never added to a session) for building a provider context."""
    return Connection(
        id=uuid.UUID(plan.connection_id),
        workspace_id=plan.workspace_id,
        user_id="",
        auth_provider=plan.auth_provider,
        provider_account_id=plan.provider_account_id,
        status=ConnectionStatus.ACTIVE.value,
        capabilities=[entry["capability"] for entry in plan.undo],
        granted_scopes=[],
    )


def _context(engine: Any, plan: Plan, entry: dict[str, Any]) -> tuple[Any, StreamContext] | None:
    connection = _connection(plan)
    found = engine.capability(connection, entry["capability"])
    if found is None or found[1].lifecycle is None:
        return None
    spec, capability = found
    listed = entry["resource"]
    resource = Resource(listed["external_id"], listed["name"], listed["detail"] or {})
    ctx = engine.context(connection, spec, resource)
    channels = PlanChannels(entry, ctx.channels.address) if ctx.channels is not None else None
    return capability.lifecycle, dataclasses.replace(ctx, credentials=PlanCredentials(engine, plan), channels=channels)


def grant_in_use(session: Session, plan: Plan) -> bool:
    """Whether a connection (any workspace) now holds a grant of the plan's account: a revoke would end it too."""
    held = exists().where(SealedCredential.connection_id == Connection.id, SealedCredential.kind.in_([ACCESS, REFRESH]))
    found = session.scalar(
        select(func.count())
        .select_from(Connection)
        .where(
            Connection.auth_provider == plan.auth_provider,
            Connection.provider_account_id == plan.provider_account_id,
            Connection.id != uuid.UUID(plan.connection_id),
            Connection.status != ConnectionStatus.DISCONNECTED.value,
            held,
        )
    )
    return bool(found)


def carry_out(engine: Any, plan: Plan) -> Outcome:
    """Make the plan's provider calls, taking each out of the plan as it lands: undo every resource, then (only once
    they all landed, as they need the token) revoke. A credential the provider no longer takes counts as undone:
    the grant is gone already."""
    outcome = Outcome()
    for entry in list(plan.undo):
        made = _context(engine, plan, entry)
        try:
            if made is not None:
                made[0].deselected(made[1])
        except AuthRevoked:
            pass
        except Exception as exc:
            outcome.error = f"{entry['capability']}: {described(exc)}"
            log.warning("an erase's provider undo failed: %s", outcome.error, extra={"error_type": type(exc).__name__})
            continue
        plan.undo.remove(entry)
        outcome.undone += 1
    if plan.undo or not plan.revoke:
        return outcome
    token = plan.refresh or plan.access
    if token is None:
        plan.revoke = False
        return outcome
    with engine.sessions() as session:
        shared = grant_in_use(session, plan)
    if shared:
        plan.revoke = False
        return outcome
    try:
        outcome.revoked = client_for(engine.settings, plan.auth_provider).revoke(token)
    except Exception as exc:
        outcome.revoked = False
        outcome.error = f"revoke: {described(exc)}"
    if outcome.revoked:
        plan.revoke = False
    elif outcome.error is None:
        outcome.error = "revoke: the provider did not confirm it"
    return outcome


def _binding(row_id: uuid.UUID) -> Binding:
    return Binding("privacy", str(row_id), PLAN_KIND)


def backoff(settings: Any, attempts: int) -> timedelta:
    privacy = settings.privacy
    return timedelta(seconds=min(privacy.undo_retry_max_seconds, privacy.undo_retry_base_seconds * 2 ** (attempts - 1)))


def owe(session: Session, ring: KeyRing, settings: Any, plan: Plan, error: str | None) -> uuid.UUID:
    """Keep what the providers did not accept, sealed, for beat to try again (in the caller's transaction)."""
    row_id = uuid.uuid4()
    session.add(
        PendingUndo(
            id=row_id,
            auth_provider=plan.auth_provider,
            key_id=ring.active_key_id,
            sealed=ring.seal(plan.dumps(), _binding(row_id)),
            attempts=1,
            next_attempt_at=utcnow() + backoff(settings, 1),
            last_error=error,
        )
    )
    return row_id


def retry_owed(engine: Any, ring: KeyRing, now: datetime | None = None, limit: int = 20) -> dict[str, int]:
    """Try again each owed undo that is due; a plan that landed whole is deleted (its tokens with it) and the
    workspace's audit log says so."""
    done = again = 0
    for _ in range(limit):
        with transaction(engine.sessions) as session:
            row = session.scalars(
                select(PendingUndo)
                .where(PendingUndo.next_attempt_at <= (now or utcnow()))
                .order_by(PendingUndo.next_attempt_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                break
            try:
                plan = Plan.loads(ring.open(row.sealed, _binding(row.id)))
            except SealError as exc:
                # Sealed under a key that left the ring: nothing can be tried; kept (and said) for an operator.
                row.attempts += 1
                row.next_attempt_at = utcnow() + backoff(engine.settings, row.attempts)
                row.last_error = f"cannot be opened: {exc}"
                log.error("an owed provider undo cannot be opened", extra={"error_type": type(exc).__name__})
                again += 1
                continue
            outcome = carry_out(engine, plan)
            if not plan.owed:
                session.delete(row)
                audit_workspace(
                    session,
                    plan.workspace_id,
                    "system",
                    "privacy.provider_undo_done",
                    pending_id=str(row.id),
                    attempts=row.attempts + 1,
                    resources_undone=outcome.undone,
                    revoked_at_provider=bool(outcome.revoked),
                )
                done += 1
                continue
            row.attempts += 1
            row.sealed, row.key_id = ring.seal(plan.dumps(), _binding(row.id)), ring.active_key_id
            row.next_attempt_at = utcnow() + backoff(engine.settings, row.attempts)
            row.last_error = outcome.error
            again += 1
    return {"done": done, "again": again}


GRANT_LOCK_PREFIX = "synchub:grant:"  # the same lock hub.connections.disconnect takes
GRANT_LOCK_SECONDS = 60.0


class GrantBusy(Exception):
    """Another disconnect or erase of the same account is deciding about its grant."""


@dataclass(frozen=True)
class Erased:
    """One connection's erase: rows deleted, what the providers accepted, and the owed row if some call failed."""

    connection_id: str
    rows_deleted: int
    resources_undone: int
    revoked_at_provider: bool
    grant_in_use_elsewhere: bool
    pending_id: str | None
    resources: tuple[str, ...] = field(default=(), repr=False)
    """The provider ids of the resources it selected (a calendar id can be an address): never in an answer."""

    @property
    def provider_undo(self) -> str:
        return "pending" if self.pending_id else "done"

    def as_dict(self) -> dict[str, Any]:
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "resources"}
        return {**shown, "provider_undo": self.provider_undo}


def erase_one(engine: Any, ring: KeyRing, connection_id: uuid.UUID) -> Erased | None:
    """Erase a connection and everything any table holds of it (the holdings registry's every role, its audit
    entries too), after asking the providers to undo what it set up and to revoke its grant (unless another
    connection holds the same grant). A provider that fails leaves a sealed owed row, retried by beat; the local
    erase completes at once either way, in one transaction. None if there is no such connection."""
    with engine.sessions() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return None
        check_database(session, Base.metadata)
        key = f"{GRANT_LOCK_PREFIX}{connection.auth_provider}:{connection.provider_account_id}"
    lock = engine.redis.lock(key, timeout=GRANT_LOCK_SECONDS, blocking_timeout=GRANT_LOCK_SECONDS)
    if not lock.acquire():
        raise GrantBusy("another disconnect or erase of this account is under way; try again in a minute")
    try:
        with engine.sessions() as session:
            connection = session.get(Connection, connection_id)
            if connection is None:
                return None
            plan = plan_for(engine, session, connection, ring)
            selected = tuple(
                row.external_id
                for capability in connection.capabilities
                for row in resources.listed(session, connection.id, capability)
            )
            shared = grant_in_use(session, plan)
            plan.revoke = not shared
        outcome = carry_out(engine, plan)
        with transaction(engine.sessions) as session:
            rows = _erase_rows(session, connection_id)
            pending = owe(session, ring, engine.settings, plan, outcome.error) if plan.owed else None
    finally:
        if lock.owned():
            lock.release()
    return Erased(
        str(connection_id),
        rows,
        outcome.undone,
        bool(outcome.revoked),
        shared,
        str(pending) if pending else None,
        selected,
    )


def _erase_rows(session: Session, connection_id: uuid.UUID) -> int:
    """In the order disconnect locks them (active runs, then the connection), delete every row of the connection;
    a run or record written meanwhile waits for this transaction and goes with the connection (cascade)."""
    for _ in session.scalars(
        select(SyncRun)
        .where(SyncRun.connection_id == connection_id, SyncRun.status.in_(list(ACTIVE_STATUSES)))
        .with_for_update()
    ):
        pass
    connection = session.get(Connection, connection_id, with_for_update={"key_share": True}, populate_existing=True)
    if connection is None:
        return 0
    erased = erase_connection(session, Base.metadata, connection_id, set(Role) - {Role.NONE, Role.AUDIT})
    audit_rows = session.execute(delete(AuditEvent).where(AuditEvent.connection_id == connection_id))
    session.delete(connection)
    session.flush()
    return int(sum(erased.values())) + int(getattr(audit_rows, "rowcount", 0) or 0) + 1
