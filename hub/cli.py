"""The `synchub` command: api, worker, beat, sync, connections, db, vault, webhooks, privacy, dev. Settings are
validated first.

Every command but `dev` takes the variables a running dev hub wrote to .synchub/env (in this folder or one above)
when the environment names no database of its own, so a second shell reaches the dev hub as it is."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from connectors.base import Command
    from core.models import Connection
    from sync.engine import SyncEngine
    from token_vault.sealing import KeyRing

app = typer.Typer(no_args_is_help=True, add_completion=False, help="synchub, the integration sync hub.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
vault_app = typer.Typer(no_args_is_help=True, help="The vault's key ring: re-seal under the active key, check it.")
app.add_typer(vault_app, name="vault")
webhooks_app = typer.Typer(no_args_is_help=True, help="The webhook inbox: list deliveries, send a failed one again.")
app.add_typer(webhooks_app, name="webhooks")
privacy_app = typer.Typer(
    no_args_is_help=True,
    help="The privacy controls: export a user's data, erase a user or connection, forget a person, cancel or "
    "reactivate a workspace.",
)
app.add_typer(privacy_app, name="privacy")


@app.callback()
def main(ctx: typer.Context) -> None:
    """synchub, the integration sync hub."""
    from hub.dev_env import use_dev_env

    if ctx.invoked_subcommand != "dev":
        use_dev_env(os.environ, Path.cwd())


def fail(message: str, code: int = 2) -> NoReturn:
    for line in message.splitlines():
        print(f"synchub: {line}", file=sys.stderr)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """Valid settings with every enabled connector configured, or exit with one line per problem. Logging is set
    up from them (core.logs), so every command's lines are in the configured format on stderr."""
    from core import logs
    from oauth.providers import configured

    try:
        settings = load_settings()
        configured(settings)
    except ConfigError as exc:
        fail(str(exc))
    logs.setup(settings.log_level, settings.log_format)
    return settings


def ready_settings() -> Settings:
    """Settings for a long-running process: valid, schema at head, every credential's key in the ring."""
    from core.db import make_engine
    from hub.startup import StartupError, check_startup

    settings = settings_or_exit()
    engine = make_engine(settings.database_url)
    try:
        check_startup(settings, engine)
    except StartupError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    return settings


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API, the settings page and the webhooks."""
    settings = ready_settings()
    import uvicorn

    from hub.app import create_app

    # proxy_headers off: which X-Forwarded-For to believe is SYNCHUB_TRUSTED_PROXIES' decision, not uvicorn's
    # (which by default believes any from 127.0.0.1).
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's own lines go through core.logs, set up by ready_settings
        access_log=False,
        proxy_headers=False,
    )


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")] = "webhooks,sync,maintenance",
    concurrency: Annotated[int, typer.Option(help="Pool processes.")] = 2,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve the pool's counters in Prometheus' format on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface the metrics port listens on.")] = "127.0.0.1",
) -> None:
    """Run a Celery worker."""
    if metrics_port is not None:
        serve_pool_metrics(metrics_host, metrics_port)
    settings = ready_settings()
    from sync.tasks import app as celery

    celery.worker_main(
        [
            "--quiet",  # no banner: stdout is not a log; every line goes through core.logs on stderr
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "--loglevel",
            settings.log_level,
            "--without-mingle",
            "--without-gossip",
        ]
    )


def serve_pool_metrics(host: str, port: int) -> None:
    """Count in multiprocess mode, in a fresh folder of this worker's own, so that the pool's children (which fork
    from this process) write files the main process adds up on `port`. Must run before anything imports the
    Prometheus client."""
    import atexit
    import shutil

    if "prometheus_client" in sys.modules:
        fail("the metrics client was imported before its multiprocess folder was set")
    folder = tempfile.mkdtemp(prefix="synchub-metrics-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder

    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    from core import metrics

    metrics.register()
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        fail(f"cannot serve metrics on {host}:{port} ({exc.strerror})")


@app.command()
def beat(
    schedule_file: Annotated[Path, typer.Option(help="Where beat keeps its last-run times.")] = Path(
        tempfile.gettempdir()
    )
    / "synchub-beat-schedule",
) -> None:
    """Run the Celery beat scheduler (one per deployment)."""
    settings = ready_settings()
    from sync.tasks import app as celery

    celery.start(["--quiet", "beat", "--schedule", str(schedule_file), "--loglevel", settings.log_level])


@app.command()
def sync(
    connection_id: Annotated[str, typer.Argument(help="The connection to sync.")],
    capability: Annotated[str | None, typer.Option(help="Only this capability (default: all granted).")] = None,
) -> None:
    """Run a connection's sync in the foreground, through the same run record and lock as the workers."""
    import uuid

    from hub.foreground import ForegroundError, sync_in_foreground

    settings = ready_settings()
    try:
        parsed = uuid.UUID(connection_id)
    except ValueError:
        fail(f"{connection_id} is not a connection id")
    try:
        code = sync_in_foreground(settings, parsed, capability)
    except ForegroundError as exc:
        fail(str(exc), code=1)
    raise typer.Exit(code)


@app.command()
def connections() -> None:
    """List every connection, oldest first: its id, auth provider, account, workspace and state."""
    from sqlalchemy import select

    from core.models import Connection

    engine = migrated_engine(settings_or_exit())
    try:
        with Session(engine) as session:
            found = session.scalars(select(Connection).order_by(Connection.created_at)).all()
    finally:
        engine.dispose()
    if not found:
        print("no connections yet: connect an account on the settings page")
        return
    rows = [("ID", "PROVIDER", "ACCOUNT", "WORKSPACE", "STATE")]
    rows += [
        (str(c.id), c.auth_provider, c.account_email or c.provider_account_id, c.workspace_id, state_of(c))
        for c in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def state_of(connection: Connection) -> str:
    return f"{connection.status} ({connection.status_reason})" if connection.status_reason else connection.status


def _pause_or_resume(connection_id: str, paused: bool) -> None:
    import uuid

    from hub.connections import pause_or_resume
    from hub.errors import Conflict, NotFound
    from sync.celery_app import make_celery
    from sync.runtime import Runtime
    from sync.wiring import build_engine

    settings = ready_settings()
    try:
        parsed = uuid.UUID(connection_id)
    except ValueError:
        fail(f"{connection_id} is not a connection id")
    rt = Runtime.build(settings)
    try:
        result = pause_or_resume(build_engine(rt), make_celery(settings), parsed, paused, actor="cli")
    except NotFound as exc:
        fail(f"{exc.what} does not exist", code=1)
    except Conflict as exc:
        fail(str(exc), code=1)
    finally:
        rt.engine.dispose()
    verb = "paused" if paused else "resumed"
    print(
        f"connection {result['id']} {verb if result['changed'] else 'was already ' + verb}; status {result['status']}"
    )
    for capability, run_id in result["runs"].items():
        print(f"{capability}: run {run_id} queued" if run_id else f"{capability}: not run (access not granted)")


@app.command()
def pause(connection_id: Annotated[str, typer.Argument(help="The connection to pause.")]) -> None:
    """Pause a connection: no new runs, a running one stops after its current page, no provider calls."""
    _pause_or_resume(connection_id, paused=True)


@app.command()
def resume(connection_id: Annotated[str, typer.Argument(help="The connection to resume.")]) -> None:
    """Resume a paused connection; it syncs at once from its checkpoints."""
    _pause_or_resume(connection_id, paused=False)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Run the migrations up to REVISION."""
    from core.db import make_engine
    from hub.database import upgrade

    settings = settings_or_exit()
    engine = make_engine(settings.database_url)
    upgrade(engine, revision)
    engine.dispose()
    print(f"database at {revision}")


def migrated_engine(settings: Settings) -> Engine:
    """An engine on a database whose schema is at head, or exit saying why in one line."""
    from core.db import make_engine
    from hub.startup import check_schema

    engine = make_engine(settings.database_url)
    try:
        check_schema(engine)
    except Exception as exc:
        engine.dispose()
        fail(str(exc).splitlines()[0])
    return engine


@contextmanager
def vault_sessions() -> Iterator[tuple[KeyRing, sessionmaker[Session]]]:
    """The configured key ring and sessions on a migrated database, for the vault commands."""
    from core.db import session_factory
    from token_vault.vault import key_ring

    settings = settings_or_exit()
    ring = key_ring(settings.vault)
    engine = migrated_engine(settings)
    try:
        yield ring, session_factory(engine)
    finally:
        engine.dispose()


@vault_app.command("rotate")
def vault_rotate() -> None:
    """Re-seal every credential and checkpoint under the active key; syncs and refreshes may keep running."""
    from token_vault.rotation import rotate
    from token_vault.vault import counted

    with vault_sessions() as (ring, sessions):
        report = rotate(sessions, ring)
    resealed = " and ".join(counted(count, table) for table, count in report.resealed.items())
    print(
        f"re-sealed {resealed} under key id {ring.active_key_id}; {report.retried} retried after a concurrent "
        f"write, {report.current} already on key id {ring.active_key_id}"
    )
    problems = [
        f"{counted(count, table)} did not open with the key ring and were left as they were: see `synchub vault status`"
        for table, count in report.unopened.items()
        if count
    ]
    if report.contended:
        problems.append(
            f"{report.contended} rows kept changing and were left on their old key: run `synchub vault rotate` again"
        )
    if problems:
        fail("\n".join(problems), code=1)


@vault_app.command("status")
def vault_status() -> None:
    """Count rows per key id and check that every credential and checkpoint opens with the key ring."""
    from token_vault.rotation import status
    from token_vault.vault import counted

    with vault_sessions() as (ring, sessions):
        found = status(sessions, ring)
    print(f"key ring: key ids {', '.join(map(str, sorted(ring.key_ids)))}; active key id {ring.active_key_id}")
    for table in found.tables:
        on_keys = [
            f"{count} on key id {key_id}{'' if key_id in ring.key_ids else ' (not in the ring)'}"
            for key_id, count in sorted(table.by_key.items())
        ]
        print(f"{table.name}: {', '.join(on_keys) or 'none'}")
    if found.healthy:
        print(f"all {' and '.join(counted(table.rows, table.name) for table in found.tables)} open with the key ring")
        return
    unopened = " and ".join(f"{t.unopened} of {counted(t.rows, t.name)}" for t in found.tables if t.unopened)
    problems = [f"{unopened} do not open with the key ring"] if unopened else []
    problems += [
        f"key id {key_id} ({', '.join(counted(count, name) for name, count in rows.items())}) "
        "is not in SYNCHUB_VAULT__KEYS"
        for key_id, rows in sorted(found.missing_keys.items())
    ]
    fail("\n".join(problems), code=1)


@webhooks_app.command("list")
def webhooks_list(
    status: Annotated[
        str | None, typer.Option(help="Only deliveries in this status: pending, processed, ignored or failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
) -> None:
    """List webhook deliveries, newest first: id, connector, status, attempts, when received, and the error."""
    from webhooks.inbox import listed
    from webhooks.models import DeliveryStatus

    if status is not None and status not in set(DeliveryStatus):
        fail(f"--status must be one of {', '.join(DeliveryStatus)}")
    engine = migrated_engine(settings_or_exit())
    try:
        with Session(engine) as session:
            found = listed(session, status, limit)
    finally:
        engine.dispose()
    if not found:
        print("no webhook deliveries" + (f" with status {status}" if status else ""))
        return
    rows = [("ID", "CONNECTOR", "STATUS", "ATTEMPTS", "RECEIVED", "ERROR")]
    rows += [
        (str(d.id), d.connector, d.status, str(d.attempts), d.received_at.isoformat(timespec="seconds"), d.error or "")
        for d in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


@webhooks_app.command("retry")
def webhooks_retry(delivery_id: Annotated[int, typer.Argument(help="The failed delivery to send again.")]) -> None:
    """Put a failed delivery back in the inbox, attempts reset, and send it to the workers."""
    from core.db import session_factory, transaction
    from sync.celery_app import make_celery
    from webhooks.inbox import retry
    from webhooks.processing import send

    settings = settings_or_exit()
    engine = migrated_engine(settings)
    try:
        with transaction(session_factory(engine)) as session:
            again = retry(session, delivery_id)
    finally:
        engine.dispose()
    if not again:
        fail(f"delivery {delivery_id} is not a failed delivery with its payload", code=1)
    sent = send(make_celery(settings), [delivery_id])
    print(f"delivery {delivery_id} is pending again; " + ("sent to the workers" if sent else "the sweeper sends it"))


@privacy_app.command("export")
def privacy_export(
    user: Annotated[str, typer.Argument(help="The user (the CRM's user id) whose integration data to export.")],
    workspace: Annotated[str, typer.Option(help="The user's workspace (the CRM's workspace id).")],
    output: Annotated[
        Path | None, typer.Option(help="Write the JSON document to this file (standard output when not given).")
    ] = None,
) -> None:
    """Export a user's integration data as one JSON document, streamed: connections (no secrets), resources,
    synced records of every kind, runs and the audit log. The audit log records it."""
    from core.db import session_factory
    from hub.export import Export

    engine = migrated_engine(settings_or_exit())
    found = Export(engine, session_factory(engine), workspace, user, actor="cli")
    try:
        found.check()
        with output.open("wb") if output is not None else open(sys.stdout.fileno(), "wb", closefd=False) as out:
            for chunk in found.chunks():
                out.write(chunk)
    finally:
        engine.dispose()


@contextmanager
def privacy_engine() -> Iterator[SyncEngine]:
    """The sync engine on a ready database, for the privacy commands."""
    from sync.runtime import Runtime
    from sync.wiring import build_engine

    rt = Runtime.build(ready_settings())
    try:
        yield build_engine(rt)
    finally:
        rt.engine.dispose()


def print_erased(answer: dict[str, Any]) -> None:
    for erased in answer["connections"]:
        revoked = "revoked at the provider" if erased["revoked_at_provider"] else "not revoked"
        if erased["grant_in_use_elsewhere"]:
            revoked = "grant kept (another connection uses it)"
        print(
            f"connection {erased['connection_id']}: {erased['rows_deleted']} rows deleted; {revoked}; "
            f"{erased['resources_undone']} subscriptions undone; provider undo {erased['provider_undo']}"
        )
    print(f"{answer['rows_deleted']} rows deleted in all; {answer['provider_undo_note']}")


@privacy_app.command("erase")
def privacy_erase(
    user: Annotated[str, typer.Argument(help="The user id (the CRM's `sub`) to erase.")],
    workspace: Annotated[
        str | None, typer.Option(help="Only in this workspace (default: every workspace the user has connections in).")
    ] = None,
    connection: Annotated[str | None, typer.Option(help="Only this connection of the user.")] = None,
) -> None:
    """Erase a user's integration data (or one connection's): revoke, unsubscribe, stop channels, delete every row."""
    import uuid

    from sqlalchemy import select

    from core.models import Connection
    from hub.erasure import erase_connection, erase_user
    from hub.errors import Conflict, NotFound

    with privacy_engine() as engine:
        query = select(Connection.workspace_id, Connection.id).where(Connection.user_id == user)
        if workspace is not None:
            query = query.where(Connection.workspace_id == workspace)
        with engine.sessions() as session:
            found = session.execute(query).all()
        try:
            if connection is not None:
                try:
                    parsed = uuid.UUID(connection)
                except ValueError:
                    fail(f"{connection} is not a connection id")
                owner = next((w for w, c in found if c == parsed), None)
                if owner is None:
                    fail(f"connection {connection} is not {user}'s" + (f" in {workspace}" if workspace else ""), 1)
                print_erased(erase_connection(engine, owner, user, parsed))
                return
            workspaces = sorted({w for w, _ in found} | ({workspace} if workspace else set()))
            if not workspaces:
                fail(f"{user} has no connections: name the workspace with --workspace to erase the rest", 1)
            for each in workspaces:
                print(f"workspace {each}:")
                print_erased(erase_user(engine, each, user))
        except (Conflict, NotFound) as exc:
            fail(str(exc), 1)


@privacy_app.command("forget")
def privacy_forget(
    email: Annotated[str, typer.Argument(help="The address of the person to forget.")],
    workspace: Annotated[str, typer.Option(help="The workspace that forgets them.")],
) -> None:
    """Delete a person from every synced record of a workspace and keep their address (as a keyed hash) from
    coming back with later syncs."""
    from hub.erasure import forget

    with privacy_engine() as engine:
        try:
            answer = forget(engine, workspace, email)
        except ValueError as exc:
            fail(str(exc))
    deleted = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in answer["deleted"].items())
    listed = "was already on" if answer["already_listed"] else "is now on"
    print(f"deleted {deleted}; the address {listed} the workspace's suppression list")


@privacy_app.command("cancel")
def privacy_cancel(workspace: Annotated[str, typer.Argument(help="The workspace to cancel.")]) -> None:
    """Cancel a workspace: its connections pause, and its data is deleted when the retention period ends."""
    from sync.retention import cancel_workspace

    with privacy_engine() as engine:
        answer = cancel_workspace(engine.sessions, workspace, engine.settings.retention_days)
    print(
        f"workspace {workspace} cancelled at {answer['cancelled_at']}; {answer['connections_paused']} connections "
        f"paused; its data is deleted after {answer['data_deleted_after']} unless it is reactivated"
    )


@privacy_app.command("reactivate")
def privacy_reactivate(workspace: Annotated[str, typer.Argument(help="The cancelled workspace.")]) -> None:
    """Reverse a workspace's cancellation inside the retention period; its paused connections resume."""
    from sync.retention import WindowEnded, reactivate_workspace

    with privacy_engine() as engine:
        try:
            answer = reactivate_workspace(engine.sessions, workspace, engine.settings.retention_days)
        except (LookupError, WindowEnded) as exc:
            fail(str(exc), 1)
    print(f"workspace {workspace} reactivated; {answer['connections_resumed']} connections resumed")


def connector_command(slug: str, command: Command) -> Callable[[], None]:
    """A connector's operator command, run with the hub's settings and its auth provider's OAuth client."""

    def run() -> None:
        from connectors.base import OperatorContext
        from connectors.registry import available, enabled, settings_of
        from core.errors import ConnectorError
        from oauth.providers import client_settings

        settings = settings_or_exit()
        spec = available()[slug]
        if spec not in enabled(settings):
            fail(f"the connector {slug} is not enabled (SYNCHUB_CONNECTORS)")
        client = client_settings(settings, spec.auth_provider)
        if client is None:
            fail(f"SYNCHUB_{spec.auth_provider.upper()}__CLIENT_ID and __CLIENT_SECRET are not set")
        context = OperatorContext(
            settings.public_url,
            client.client_id,
            client.client_secret.get_secret_value(),
            client.base_url,
            settings_of(settings, spec),
            client.timeout_seconds,
        )
        try:
            print(command.run(context))
        except ConnectorError as exc:
            fail(str(exc), code=1)

    return run


def add_connector_commands() -> None:
    """`synchub <auth provider> <command>` for each operator command a connector declares."""
    from connectors.registry import available

    groups: dict[str, typer.Typer] = {}
    for spec in available().values():
        for command in spec.commands:
            group = groups.get(spec.auth_provider)
            if group is None:
                group = typer.Typer(no_args_is_help=True, help=f"Operator commands of the {spec.auth_provider} app.")
                groups[spec.auth_provider] = group
                app.add_typer(group, name=spec.auth_provider)
            group.command(command.name, help=command.help)(connector_command(spec.slug, command))


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port; 0 picks a free one.")] = 8000,
    home: Annotated[Path, typer.Option(help="Where local state lives.")] = Path(".synchub"),
) -> None:
    """Run the whole hub locally: its own PostgreSQL, Redis, API, worker, beat and sandbox, on 127.0.0.1."""
    from hub.dev import DevError, run_dev

    try:
        code = run_dev(home.resolve(), port)
    except DevError as exc:
        fail(str(exc))
    raise typer.Exit(code)


add_connector_commands()
