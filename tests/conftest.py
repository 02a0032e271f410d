"""Test session: its own PostgreSQL database (built by the migrations), its own redis-server, real servers."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import uvicorn
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, session_factory
from core.identity import issue_token
from core.settings import Settings, load_settings, normalise_database_url
from hub.app import create_app
from hub.database import scratch_database
from tests.servers import free_port, kill_group, redis_server, spawn

ROOT = Path(__file__).resolve().parent.parent


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll until `check()` is truthy; fail the test with `what` if the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def logs_captured(skip: Callable[[logging.LogRecord], bool] | None = None) -> Iterator[list[str]]:
    """Every log record of this process while the block runs (the hub's API runs in it), each with its extra fields,
    at DEBUG: where a test looks for a secret that must never be logged. `skip` leaves out the records it names."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if skip is None or not skip(record):
                lines.append(f"{record.getMessage()} {record.__dict__!r}")

    handler, root = Keep(logging.DEBUG), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get("SYNCHUB_TEST_PG_ADMIN_URL")
    if not url:
        pytest.exit(
            "SYNCHUB_TEST_PG_ADMIN_URL is not set: run the tests with `bash scripts/test`, or set it to a "
            "PostgreSQL URL of a role that may create databases",
            returncode=2,
        )
    return normalise_database_url(url)


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    with scratch_database(pg_admin_url, "synchub_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This pytest process's own redis-server: no other session's worker can take its tasks."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def vault_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="session")
def hub_env(database_url: str, redis_url: str, vault_key: str, jwt_secret: str) -> dict[str, str]:
    """The SYNCHUB_* variables a hub process of this test session runs with."""
    return {
        "SYNCHUB_DATABASE_URL": database_url,
        "SYNCHUB_REDIS_URL": redis_url,
        "SYNCHUB_PUBLIC_URL": "http://127.0.0.1:8000",
        "SYNCHUB_VAULT__KEYS": f"1:{vault_key}",
        "SYNCHUB_VAULT__ACTIVE_KEY_ID": "1",
        "SYNCHUB_IDENTITY__JWT_SECRET": jwt_secret,
        "SYNCHUB_LOG_LEVEL": "WARNING",
        # Every test's requests come from 127.0.0.1: request limits stay out of the way of tests not about them.
        "SYNCHUB_REQUEST_LIMITS__USER_BURST": "10000",
        "SYNCHUB_REQUEST_LIMITS__ADDRESS_BURST": "10000",
    }


def clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any SYNCHUB_* variable, plus `extra`."""
    base = {name: value for name, value in os.environ.items() if not name.startswith("SYNCHUB_")}
    return {**base, **extra}


def settings_from_env(env: dict[str, str]) -> Settings:
    """The settings a hub process started with exactly `env` (and no other SYNCHUB_ variable) would load."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(clean_environ(env))
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def settings(hub_env: dict[str, str]) -> Settings:
    return settings_from_env(hub_env)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


class LiveServer:
    """A uvicorn server on a loopback port in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False, proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_api(settings: Settings, engine: Engine) -> Iterator[str]:
    with LiveServer(create_app(settings, engine)) as server:
        yield server.url


@pytest.fixture
def user_token(jwt_secret: str) -> Callable[..., str]:
    def mint(user_id: str = "user-1", workspace_id: str = "ws-1", ttl: int = 600, audience: str = "synchub") -> str:
        return issue_token(jwt_secret, user_id, workspace_id, ttl, audience)

    return mint


class Worker:
    """A real `synchub worker` process in its own process group, logging into `log_dir`."""

    log_dir: ClassVar[Path] = Path(tempfile.gettempdir())

    def __init__(
        self,
        env: dict[str, str],
        queues: str = "webhooks,sync,maintenance",
        concurrency: int = 1,
        metrics_port: int | None = None,
    ) -> None:
        self.log = self.log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.argv = [sys.executable, "-m", "hub", "worker", "--queues", queues, "--concurrency", str(concurrency)]
        if metrics_port is not None:
            self.argv += ["--metrics-port", str(metrics_port)]
        self.env = clean_environ(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log.open("wb") as out:
            self.process = spawn(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def stop(self, sig: int = 15) -> None:
        """Signal the worker's process group; whatever has not exited within 20 s is killed."""
        if self.process is not None:
            kill_group(self.process, sig)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Beat(Worker):
    """A real `synchub beat` process with its schedule file in the log folder."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        schedule = self.log_dir / f"beat-{uuid.uuid4().hex[:8]}.schedule"
        self.log = self.log_dir / f"beat-{uuid.uuid4().hex[:8]}.log"
        self.argv = [sys.executable, "-m", "hub", "beat", "--schedule-file", str(schedule)]


@pytest.fixture(scope="session", autouse=True)
def worker_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Worker logs live in pytest's temporary tree, which keeps only the last few runs."""
    Worker.log_dir = tmp_path_factory.mktemp("worker-logs")
    return Worker.log_dir


@pytest.fixture
def worker_factory(hub_env: dict[str, str]) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(**kwargs: Any) -> Worker:
        env = {**hub_env, **kwargs.pop("env", {})}
        worker = Worker(env, **kwargs).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
