"""The resource chooser: refresh a capability's resources from the provider, select one (the connector subscribes
to it) or deselect it (its stream stops, the connector undoes what it set up, its records are kept or deleted)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select as sa_select

from connectors.base import Capability, ConnectorSpec, Resource
from core.db import transaction
from core.errors import ConnectorError
from core.logsafe import described
from core.models import Connection, ConnectionStatus, audit
from crm.kinds import delete_resource_records
from sync import resources, schedule
from sync.engine import SyncEngine
from sync.models import ConnectionResource
from token_vault.fresh import Inactive, NoCredential

log = logging.getLogger(__name__)

PROVIDER_ERRORS = (ConnectorError, NoCredential, Inactive)


class NotChoosable(Exception):
    """The resource cannot be selected now; the message says why in plain words."""


@dataclass(frozen=True)
class Listing:
    """A capability's resources; `error` says why they are as last listed rather than fresh from the provider."""

    resources: list[ConnectionResource]
    error: str | None
    defaulted: tuple[str, ...] = ()
    """Resources selected by default as they were first listed (a primary calendar): their first sync is due."""

    @property
    def refreshed(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Deselected:
    """`undone` is whether the connector undid its subscription at the provider (None: nothing to undo)."""

    changed: bool
    runs_stopped: int
    records_deleted: int
    undone: bool | None


def chosen(row: ConnectionResource) -> Resource:
    return row.resource


def _found(engine: SyncEngine, connection: Connection, capability: str) -> tuple[ConnectorSpec, Capability]:
    found = engine.capability(connection, capability)
    assert found is not None and found[1].resources is not None, "the caller checks the capability lists resources"
    return found


def refresh(engine: SyncEngine, connection_id: uuid.UUID, capability: str) -> Listing:
    """Ask the provider for the capability's resources and record them (those it no longer lists stop syncing);
    when the connection may not call the provider now, or the provider fails, the list as last seen."""
    with engine.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        session.expunge(connection)
    spec, found = _found(engine, connection, capability)
    error = engine.refusal(connection, capability)
    with engine.sessions() as session:
        known = {row.external_id for row in resources.listed(session, connection_id, capability)}
    if error is None:
        assert found.resources is not None
        try:
            listed = found.resources(engine.context(connection, spec))
        except PROVIDER_ERRORS as exc:
            log.warning(
                "listing resources failed: %s",
                described(exc),
                extra={"connection_id": str(connection_id), "error_type": type(exc).__name__},
            )
            error = str(exc)
        else:
            with transaction(engine.sessions) as session:
                resources.refresh(session, session.get_one(Connection, connection_id), capability, listed)
    defaulted: list[str] = []
    with engine.sessions() as session:
        rows = resources.listed(session, connection_id, capability)
        session.expunge_all()
    for row in rows:
        if error is None and row.external_id not in known and (row.detail or {}).get("selected_by_default"):
            try:
                if select(engine, connection_id, capability, row.key, "hub"):
                    defaulted.append(row.key)
            except (NotChoosable, *PROVIDER_ERRORS) as exc:
                log.warning("selecting a resource by default failed: %s", described(exc))
    if defaulted:
        with engine.sessions() as session:
            rows = resources.listed(session, connection_id, capability)
            session.expunge_all()
    return Listing(rows, error, tuple(defaulted))


def select(engine: SyncEngine, connection_id: uuid.UUID, capability: str, key: str, actor: str) -> bool:
    """Select a resource: the connector reacts first (subscribes the Page, opens the channel), then the resource
    gets its schedule. False if it was selected already; NotChoosable if it cannot be now; a ConnectorError from
    the provider leaves it unselected."""
    with engine.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        row = resources.find(session, connection_id, capability, key)
        assert row is not None, "the caller checks the resource is the connection's"
        session.expunge_all()
    if row.selected and row.gone_at is None:
        return False
    if row.gone_at is not None:
        raise NotChoosable("the provider no longer lists this resource")
    refusal = engine.refusal(connection, capability)
    if refusal is not None:
        raise NotChoosable(f"it cannot sync now: {refusal}")
    spec, found = _found(engine, connection, capability)
    if found.lifecycle is not None:
        try:
            found.lifecycle.selected(engine.context(connection, spec, chosen(row)))
        except (NoCredential, Inactive) as exc:
            raise NotChoosable(f"it cannot sync now: {exc}") from exc
    with transaction(engine.sessions) as session:
        current = session.get_one(ConnectionResource, row.id, with_for_update=True)
        current.selected = True
        connection = session.get_one(Connection, connection_id)
        schedule.ensure(session, engine.settings, connection, capability, key)
        audit(session, connection, actor, "resource.selected", capability=capability, resource=key)
    return True


def parts_of(engine: SyncEngine, connection_id: uuid.UUID, capability: str, key: str) -> list[Resource]:
    """What the provider lists within a resource the user selected (a Page's forms); NotChoosable when the
    capability lists no parts, the resource is not selected, or the connection may not call the provider now."""
    with engine.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        row = resources.find(session, connection_id, capability, key)
        assert row is not None, "the caller checks the resource is the connection's"
        session.expunge_all()
    spec, found = _found(engine, connection, capability)
    if found.parts is None:
        raise NotChoosable(f"{found.display_name} has nothing to choose within its {found.resource_noun}")
    if not row.selected or row.gone_at is not None:
        raise NotChoosable("it is not selected")
    refusal = engine.refusal(connection, capability)
    if refusal is not None:
        raise NotChoosable(f"it cannot sync now: {refusal}")
    try:
        return found.parts(engine.context(connection, spec, chosen(row)))
    except PROVIDER_ERRORS as exc:
        raise NotChoosable(f"the provider did not list them: {exc}") from exc


def choose_parts(
    engine: SyncEngine, connection_id: uuid.UUID, capability: str, key: str, parts: set[str] | None, actor: str
) -> bool:
    """Narrow a selected resource to some of its parts (`None`, none or every listed one: all of them, so parts
    the provider adds later are included). False if that was the choice already; NotChoosable for a part the
    provider does not list."""
    listed = {part.external_id for part in parts_of(engine, connection_id, capability, key)}
    if parts is not None and parts - listed:
        raise NotChoosable("the provider does not list some of the chosen parts")
    kept = None if not parts or parts >= listed else sorted(parts)
    with transaction(engine.sessions) as session:
        row = resources.find(session, connection_id, capability, key)
        assert row is not None
        session.refresh(row, with_for_update=True)
        if row.parts == kept:
            return False
        row.parts = kept
        connection = session.get_one(Connection, connection_id)
        audit(session, connection, actor, "resource.parts_chosen", capability=capability, resource=key)
    return True


def deselect(
    engine: SyncEngine, connection_id: uuid.UUID, capability: str, key: str, actor: str, delete_data: bool
) -> Deselected:
    """Deselect a resource: its runs stop and its schedule and cursor go at once, its records go too if asked,
    then the connector undoes at the provider what selecting set up (best effort, as a revoke at disconnect)."""
    with transaction(engine.sessions) as session:
        row = resources.find(session, connection_id, capability, key)
        assert row is not None, "the caller checks the resource is the connection's"
        session.refresh(row, with_for_update=True)
        was_selected = row.selected
        if not was_selected and not delete_data:
            return Deselected(changed=False, runs_stopped=0, records_deleted=0, undone=None)
        connection = session.get_one(Connection, connection_id)
        row.selected = False
        stopped = resources.stop(session, connection, capability, key, resources.DESELECTED)
        deleted = delete_resource_records(session, connection_id, key) if delete_data else 0
        audit(
            session,
            connection,
            actor,
            "resource.deselected",
            capability=capability,
            resource=key,
            runs_stopped=stopped,
            records_deleted=deleted,
        )
        session.flush()
        session.expunge_all()
    undone = _undo(engine, connection, capability, row) if was_selected else None
    return Deselected(changed=True, runs_stopped=stopped, records_deleted=deleted, undone=undone)


def held_elsewhere(engine: SyncEngine, connection: Connection, capability: str, row: ConnectionResource) -> bool:
    """Whether another live connection at the same auth provider (any workspace) still selects this resource."""
    with engine.sessions() as session:
        other = session.scalar(
            sa_select(ConnectionResource.id)
            .join(Connection, Connection.id == ConnectionResource.connection_id)
            .where(
                ConnectionResource.capability == capability,
                ConnectionResource.external_id == row.external_id,
                ConnectionResource.selected,
                ConnectionResource.connection_id != connection.id,
                Connection.auth_provider == connection.auth_provider,
                Connection.status != ConnectionStatus.DISCONNECTED.value,
            )
            .limit(1)
        )
    return other is not None


def _undo(engine: SyncEngine, connection: Connection, capability: str, row: ConnectionResource) -> bool | None:
    spec, found = _found(engine, connection, capability)
    if found.lifecycle is None:
        return None
    if found.shared_at_provider and held_elsewhere(engine, connection, capability, row):
        log.info("subscription kept: another connection selects the resource", extra={"resource": row.key})
        return None
    if engine.refusal(connection, capability) is not None:
        return False
    try:
        found.lifecycle.deselected(engine.context(connection, spec, chosen(row)))
    except PROVIDER_ERRORS as exc:
        log.warning(
            "undoing a resource's subscription failed: %s",
            described(exc),
            extra={"resource": row.key, "error_type": type(exc).__name__},
        )
        return False
    return True


def undo_all(engine: SyncEngine, connection_id: uuid.UUID) -> bool | None:
    """Before a disconnect revokes the grant: undo at the provider what selecting each resource set up (a Page's
    subscription, a channel), best effort as the revoke is. True if every undo went through, False if one did
    not, None if there was nothing to undo."""
    with engine.sessions() as session:
        connection = session.get_one(Connection, connection_id)
        selected = [
            (capability, row)
            for capability in connection.capabilities
            if (found := engine.capability(connection, capability)) is not None and found[1].lifecycle is not None
            for row in resources.listed(session, connection_id, capability)
            if row.selected
        ]
        session.expunge_all()
    outcomes = [_undo(engine, connection, capability, row) for capability, row in selected]
    undone = [outcome for outcome in outcomes if outcome is not None]
    return None if not undone else all(undone)
