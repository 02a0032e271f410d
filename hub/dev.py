"""`synchub dev`: a private PostgreSQL and state in .synchub/, a Redis if none answers, every process supervised."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psycopg
import redis

from core.settings import ConfigError, load_settings
from hub.dev_database import start_database, stop_database
from hub.dev_env import write_env

STOP_GRACE_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 60.0


class DevError(Exception):
    """The local hub cannot start; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


DATABASE_PASSWORD = "DATABASE_PASSWORD"  # noqa: S105 - the name of a generated secret in dev.env
GENERATED: dict[str, Callable[[], str]] = {
    "SYNCHUB_IDENTITY__JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "SYNCHUB_VAULT__KEYS": lambda: "1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "SYNCHUB_VAULT__ACTIVE_KEY_ID": lambda: "1",
    DATABASE_PASSWORD: lambda: secrets.token_urlsafe(24),
}


def dev_secrets(home: Path) -> dict[str, str]:
    """Generated once and reused: the JWT secret, vault key and database password, in .synchub/dev.env (mode 600).

    A file from an older version gets the secrets it lacks appended; those it has are never changed."""
    path = home / "dev.env"
    home.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    found = {name: value for name, value in pairs}
    missing = {name: make() for name, make in GENERATED.items() if name not in found}
    if missing:
        with path.open("a") as out:
            out.writelines(f"{name}={value}\n" for name, value in missing.items())
    return {**found, **missing}


@dataclass
class DevLock:
    """One dev hub per home: an flock on .synchub/dev.lock, which says who holds it and where it serves.

    The kernel releases the lock when its process ends, however it ends, so a crash never blocks the next start."""

    path: Path
    file: IO[str]

    @classmethod
    @contextlib.contextmanager
    def claim(cls, home: Path) -> Iterator[DevLock]:
        path = home / "dev.lock"
        with path.open("a+") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DevError(already_running(home, path)) from None
            lock = cls(path, file)
            lock.note(pid=os.getpid())
            try:
                yield lock
            finally:
                lock.note()

    def note(self, **facts: object) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.file.write(json.dumps(facts) + "\n" if facts else "")
        self.file.flush()


def already_running(home: Path, path: Path) -> str:
    try:
        facts = json.loads(path.read_text() or "{}")
    except ValueError:
        facts = {}
    where = f"at {facts['url']}" if "url" in facts else "still starting"
    return (
        f"a dev hub is already running in {home} (pid {facts.get('pid', '?')}, {where}); "
        "use that one, or stop it (Ctrl-C in its shell) first"
    )


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


@dataclass
class Supervisor:
    """Children in their own process groups; if one dies or we are interrupted, all are stopped."""

    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = process
        return process

    def dead(self) -> str | None:
        return next((name for name, p in self.processes.items() if p.poll() is not None), None)

    def stop_all(self) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def start_redis(supervisor: Supervisor, home: Path) -> str:
    port = free_port()
    server = shutil.which("redis-server") or shutil.which("valkey-server")
    if server is None:
        raise DevError("no Redis answers and redis-server is not installed: apt-get install redis-server")
    supervisor.start(
        "redis",
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        os.environ,
        home / "redis.log",
    )
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis_answers(url), "Redis", supervisor)
    return url


def wait_until(check: Callable[[], bool], what: str, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        if (name := supervisor.dead()) is not None:
            raise DevError(f"{name} exited while starting; see its log in .synchub/")
        time.sleep(0.1)
    raise DevError(f"{what} did not become ready within {READY_TIMEOUT_SECONDS:.0f}s")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_sandbox(supervisor: Supervisor, home: Path, public_url: str) -> list[str]:
    """The sandbox on a loopback port, with an OAuth client for this hub at each auth provider it plays whose
    client the environment does not set already; returns a line per provider it stands in for.

    Its accounts, grants and tokens live in .synchub/sandbox.state, so a restarted dev hub's connections go on
    syncing: with a sandbox that forgot them, every refresh would be refused as a revoked grant."""
    from sandbox.admin_client import SandboxAdmin
    from sandbox.dev import PLAYED

    wanted = [play for play in PLAYED if f"SYNCHUB_{play.auth_provider.upper()}__CLIENT_ID" not in os.environ]
    if not wanted:
        return []
    url = f"http://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "sandbox", "--port", url.rsplit(":", 1)[1], "--seed", "1"]
    argv += ["--state-file", str(home / "sandbox.state")]
    supervisor.start("sandbox", argv, os.environ, home / "sandbox.log")
    wait_until(lambda: http_ok(f"{url}/_sandbox/health"), "the sandbox", supervisor)
    with SandboxAdmin(url) as admin:
        for play in wanted:
            os.environ.update(play.client_env(admin, url, public_url))
    os.environ.setdefault("SYNCHUB_CONNECTORS", ",".join(slug for play in wanted for slug in play.connectors))
    return [
        f"{play.auth_provider} is played by the sandbox: pick {play.accounts}"
        + (f"; {play.try_it.format(sandbox=url)}." if play.try_it else ".")
        for play in wanted
    ]


def http_answers(url: str) -> bool:
    try:
        return httpx.request("OPTIONS", url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def stable_port(folder: Path) -> int:
    """The port a served server had last time (its accounts' URLs name it), or a free one."""
    path = folder / "port"
    with contextlib.suppress(OSError, ValueError):
        port = int(path.read_text())
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
        return port
    port = free_port()
    path.write_text(str(port))
    return port


def start_served(supervisor: Supervisor, home: Path, public_url: str) -> tuple[list[str], list[str]]:
    """The real servers of providers connected by a form (sandbox/dev.py), seeded the first time; their settings
    go to the hub's environment (unless set already). Returns a line each to print, and the connectors they bring."""
    from sandbox.dev import SERVED

    lines: list[str] = []
    connectors: list[str] = []
    for served in SERVED:
        if not served.installed():
            lines.append(f"{served.auth_provider} has no local server: pip install {served.name} to get one.")
            continue
        folder = home / served.name
        served.seed(folder)
        port = stable_port(folder)
        url = f"http://127.0.0.1:{port}/"
        supervisor.start(served.name, served.argv(folder, port), os.environ, home / f"{served.name}.log")
        wait_until(functools.partial(http_answers, url), served.name, supervisor)
        for name, value in served.env(url).items():
            os.environ.setdefault(name, value)
        connectors.extend(served.enabled())
        lines.append(served.tell(url, public_url))
    return lines, connectors


def own_postgres(home: Path, password: str) -> str:
    try:
        return start_database(home, password)
    except (subprocess.SubprocessError, psycopg.Error) as exc:
        problem = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DevError(
            f"the dev database in {home / 'postgres'} did not start: {problem}\n"
            f"its log is {home / 'postgres' / 'log'}; if .synchub/dev.env was deleted, delete {home / 'postgres'} too"
        ) from exc


def run_dev(home: Path, port: int) -> int:
    home.mkdir(parents=True, exist_ok=True)
    with DevLock.claim(home) as lock:
        return supervise(home, port, lock)


def supervise(home: Path, port: int, lock: DevLock) -> int:
    port = port or free_port()
    env = os.environ
    generated = dev_secrets(home)
    for name, value in generated.items():
        if name.startswith("SYNCHUB_"):
            env.setdefault(name, value)
    env.setdefault("SYNCHUB_PUBLIC_URL", f"http://127.0.0.1:{port}")
    env.setdefault("SYNCHUB_IDENTITY__DEV_SIGNIN", "true")
    supervisor = Supervisor()
    stop = {"signal": 0}
    own_database = "SYNCHUB_DATABASE_URL" not in env

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if own_database:
            env["SYNCHUB_DATABASE_URL"] = own_postgres(home, generated[DATABASE_PASSWORD])
        if not redis_answers(env.get("SYNCHUB_REDIS_URL", "")):
            env["SYNCHUB_REDIS_URL"] = start_redis(supervisor, home)
        chose_connectors = "SYNCHUB_CONNECTORS" in env
        played = start_sandbox(supervisor, home, env["SYNCHUB_PUBLIC_URL"])
        served, more = start_served(supervisor, home, env["SYNCHUB_PUBLIC_URL"])
        if more and not chose_connectors:
            listed = [slug for slug in env.get("SYNCHUB_CONNECTORS", "").split(",") if slug]
            env["SYNCHUB_CONNECTORS"] = ",".join(dict.fromkeys([*listed, *more]))
        try:
            settings = load_settings()
        except ConfigError as exc:
            raise DevError(str(exc)) from exc
        cli = [sys.executable, "-m", "hub"]
        quiet = {**env, "SYNCHUB_LOG_LEVEL": "WARNING"}  # the migrations' info lines would fill this terminal
        subprocess.run([*cli, "db", "upgrade"], env=quiet, check=True, stdout=subprocess.DEVNULL)
        supervisor.start("api", [*cli, "api", "--port", str(port)], env, home / "api.log")
        supervisor.start("worker", [*cli, "worker", "--concurrency", "1"], env, home / "worker.log")
        supervisor.start("beat", [*cli, "beat", "--schedule-file", str(home / "beat-schedule")], env, home / "beat.log")
        wait_until(lambda: http_ok(f"{settings.public_url}/healthz"), "the API", supervisor)
        env_file = write_env(home, env)
        lock.note(pid=os.getpid(), url=settings.public_url)
        # Each visit mints a fresh one-time sign-in token for the demo user, so the link keeps working.
        print(f"synchub is running. Open: {settings.public_url}/dev/sign-in", flush=True)
        for line in [*played, *served]:
            print(line)
        print(f"synchub commands in another shell here use this hub (through {env_file}).")
        print(f"Logs are in {home}/. Press Ctrl-C to stop.", flush=True)
        while not stop["signal"]:
            if (name := supervisor.dead()) is not None:
                print(f"synchub: {name} exited; stopping everything (see {home}/{name}.log)", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        (home / "env").unlink(missing_ok=True)
        supervisor.stop_all()
        if own_database:
            stop_database(home)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
