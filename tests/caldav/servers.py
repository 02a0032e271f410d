"""Real CalDAV servers from PyPI for the tests and benchmarks, each a child process on a loopback port.

Radicale authenticates with its own htpasswd support; Xandikos has no authentication, so it runs behind Basic auth
(`xandikos_front.py`). Both read their password file again when it changes: `set_password` is a password changed
on the server, as a user does at iCloud or Fastmail when they revoke an app password."""

from __future__ import annotations

import abc
import base64
import hashlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.servers import free_port, kill_group, spawn

FRONT = Path(__file__).with_name("xandikos_front.py")


class CalDAVServer(abc.ABC):
    """A CalDAV server for one user: `url` is its root, where discovery starts."""

    name = ""

    def __init__(self, folder: Path, username: str = "alice", password: str = "app-password-1") -> None:  # noqa: S107 (a test server's)
        self.folder, self.username, self.password = folder, username, password
        self.port = free_port()
        self.process: subprocess.Popen[Any] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @abc.abstractmethod
    def argv(self) -> list[str]: ...

    @abc.abstractmethod
    def password_line(self, password: str) -> str: ...

    def set_password(self, password: str) -> None:
        self.password = password
        path = self.folder / "users"
        before = path.stat().st_mtime_ns if path.exists() else 0
        path.write_text(f"{self.username}:{self.password_line(password)}\n")
        # The servers re-read the file when its mtime changes: make sure it does, even within one clock tick.
        os.utime(path, ns=(time.time_ns(), max(time.time_ns(), before + 1_000_000_000)))

    def start(self) -> None:
        self.set_password(self.password)
        with (self.folder / f"{self.name}.log").open("ab") as log:
            self.process = spawn(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start (log in {self.folder})")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                connection.request("OPTIONS", "/")
                status = connection.getresponse().status
                connection.close()
                if status in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within 30 s (log in {self.folder})")

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process, signal.SIGTERM, grace=5)
            self.process = None

    def client(self, password: str | None = None) -> Any:
        """A caldav library client signed in as the user (the tests' way to change the server's calendars)."""
        import caldav

        return caldav.DAVClient(url=self.url, username=self.username, password=password or self.password, timeout=10)


class RadicaleServer(CalDAVServer):
    name = "radicale"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "radicale", "--config", "",
            "--server-hosts", f"127.0.0.1:{self.port}",
            "--auth-type", "htpasswd",
            "--auth-htpasswd-filename", str(self.folder / "users"),
            "--auth-htpasswd-encryption", "plain",
            "--auth-delay", "0",
            "--rights-type", "owner_only",
            "--storage-filesystem-folder", str(self.folder / "collections"),
            "--logging-level", "warning",
        ]  # fmt: skip

    def password_line(self, password: str) -> str:
        return password


class XandikosServer(CalDAVServer):
    name = "xandikos"

    def argv(self) -> list[str]:
        return [sys.executable, str(FRONT), str(self.folder / "data"), str(self.port), str(self.folder / "users")]

    def password_line(self, password: str) -> str:
        return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()  # noqa: S324 (htpasswd's format)


SERVERS: dict[str, type[CalDAVServer]] = {"radicale": RadicaleServer, "xandikos": XandikosServer}


@contextmanager
def running(kind: str, folder: Path, **kwargs: Any) -> Iterator[CalDAVServer]:
    """A started server of `kind` ("radicale" or "xandikos") in `folder`, stopped when the block ends."""
    server = SERVERS[kind](folder, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
