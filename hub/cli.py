"""The `synchub` command: api, worker, beat, db upgrade, dev. Settings are validated before anything runs."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from core.settings import ConfigError, Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="synchub, the integration sync hub.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")


def fail(message: str, code: int = 2) -> NoReturn:
    for line in message.splitlines():
        print(f"synchub: {line}", file=sys.stderr)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """Valid settings with every enabled connector configured, or exit with one line per problem."""
    from connectors.registry import enabled

    try:
        settings = load_settings()
        enabled(settings)
    except ConfigError as exc:
        fail(str(exc))
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

    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(), access_log=False)


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")] = "webhooks,sync,maintenance",
    concurrency: Annotated[int, typer.Option(help="Pool processes.")] = 2,
) -> None:
    """Run a Celery worker."""
    settings = ready_settings()
    from sync.tasks import app as celery

    celery.worker_main(
        [
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

    celery.start(["beat", "--schedule", str(schedule_file), "--loglevel", settings.log_level])


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


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port; 0 picks a free one.")] = 8000,
    home: Annotated[Path, typer.Option(help="Where local state lives.")] = Path(".synchub"),
) -> None:
    """Run the whole hub locally: SQLite, Redis, API, worker and beat, on 127.0.0.1."""
    from hub.dev import DevError, run_dev

    try:
        code = run_dev(home.resolve(), port)
    except DevError as exc:
        fail(str(exc))
    raise typer.Exit(code)
