"""`synchub sync` as a person at a terminal sees it: a progress bar that moves while the pages come in."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import selectors
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable

from tests.conftest import ROOT, clean_environ
from tests.google.conftest import GoogleHub, new_account

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def in_a_terminal(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal (120 columns) as its stdin, stdout and stderr; its exit code and what
    the terminal received, escape sequences removed."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=ROOT, start_new_session=True
    )
    os.close(terminal)
    received = bytearray()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(controller, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.5):
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the last process holding the terminal has gone
                break
            if not chunk:
                break
            received += chunk
    os.close(controller)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return code, ESCAPES.sub("", received.decode(errors="replace"))


def test_the_progress_bar_moves_during_a_multi_page_run(google_hub_factory: Callable[..., GoogleHub]) -> None:
    hub = google_hub_factory(SYNCHUB_GOOGLE_CONTACTS__PAGE_SIZE="10")  # no worker: the CLI does the first run
    account = new_account(hub.admin, contacts=100)
    connection_id = hub.connect(hub.browser(user="terminal"), account)
    hub.admin.set_faults([{"path_prefix": "/v1/people", "status": None, "rate": 1.0, "latency_ms": 250}])
    try:
        env = clean_environ({**hub.env, "TERM": "xterm-256color"})
        code, screen = in_a_terminal([sys.executable, "-m", "hub", "sync", str(connection_id)], env, timeout=120)
    finally:
        hub.admin.clear_faults()

    assert code == 0, screen
    assert "contacts: succeeded · 100 new, 0 changed, 0 deleted · 10 API calls" in screen
    shown = {int(done) for done, total in re.findall(r"\b(\d+)/(\d+)\b", screen) if total == "100"}
    assert {done for done in shown if 0 < done < 100}, f"the bar never showed a page between start and end: {screen}"
