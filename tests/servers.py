"""Servers and processes a test session owns: each in its own process group, killed with the session or its test."""

from __future__ import annotations

import contextlib
import ctypes
import os
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


@contextmanager
def redis_server(folder: Path, attempts: int = 5) -> Iterator[str]:
    """A private `redis-server` on a free loopback port (ready in 20-30 ms), killed when the block ends."""
    for _ in range(attempts):
        port = free_port()
        argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with (folder / f"redis-{port}.log").open("wb") as log:
            process = spawn([*argv, "--dir", str(folder)], stdout=log, stderr=subprocess.STDOUT)
        url = f"redis://127.0.0.1:{port}/0"
        if _answers(url, process):
            break
        kill_group(process, signal.SIGKILL)  # the port was taken between choosing it and binding it: try another
    else:
        raise RuntimeError(f"redis-server did not start after {attempts} attempts (logs in {folder})")
    try:
        yield url
    finally:
        kill_group(process, signal.SIGKILL)


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
