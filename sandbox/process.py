"""Runs `python -m sandbox` in a child process on a free port, for tests, benchmarks and `synchub dev`."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
ANNOUNCEMENT = re.compile(rb"sandbox listening on (http://127\.0\.0\.1:\d+)")
STOP_GRACE_SECONDS = 5.0
T = TypeVar("T")


class SandboxStartError(RuntimeError):
    """The sandbox process exited or stayed silent before it was ready."""


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `check` until it returns something truthy; raise TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_announcement(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The base URL from the child's first stdout line, within `timeout` seconds."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                continue
            line = process.stdout.readline()
            if not line:
                raise SandboxStartError(f"sandbox exited with status {process.wait()} before it was ready")
            if match := ANNOUNCEMENT.search(line):
                return match.group(1).decode()
    raise SandboxStartError(f"sandbox did not announce itself within {timeout}s")


def drain(stream: IO[bytes]) -> None:
    for _ in iter(stream.readline, b""):
        continue


def answers(base_url: str) -> bool:
    try:
        return httpx.get(base_url + "/_sandbox/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_sandbox(
    seed: int = 0, port: int = 0, ready_timeout: float = 30.0, state_file: Path | None = None
) -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:PORT`) of a sandbox child process; stop it on exit.

    Its state lives in memory, or in `state_file` across processes when one is given."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "sandbox", "--port", str(port), "--seed", str(seed)]
    argv += ["--state-file", str(state_file)] if state_file else []
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE)
    try:
        base_url = read_announcement(process, ready_timeout)
        assert process.stdout is not None
        threading.Thread(target=drain, args=(process.stdout,), daemon=True).start()
        wait_until(lambda: answers(base_url), ready_timeout, f"{base_url} to answer")
        yield base_url
    finally:
        stop(process)
