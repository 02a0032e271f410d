"""A test session's worker and redis-server die with the test that started them, however that test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT, wait_for

INNER = """
import os, time
from pathlib import Path

import redis


def test_starts_a_worker_then_hangs(worker_factory, redis_url):
    worker = worker_factory()
    server_pid = redis.Redis.from_url(redis_url).info("server")["process_id"]
    Path(os.environ["ISOLATION_PIDS"]).write_text(f"{worker.process.pid} {server_pid} {redis_url}")
    time.sleep(100)
"""


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def inner_session(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[bytes], Path]:
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(INNER)
    pids = tmp_path / "pids"
    argv = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", *options]
    env = {**os.environ, "ISOLATION_PIDS": str(pids)}
    process = subprocess.Popen(
        [*argv, str(test_file)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    wait_for(pids.exists, timeout=60, what="the inner test to start its worker")
    return process, pids


def started(pids: Path) -> tuple[int, int, str]:
    worker, server, url = pids.read_text().split()
    assert group_alive(int(worker)) and group_alive(int(server))
    assert redis.Redis.from_url(url).ping()
    return int(worker), int(server), url


def gone(worker: int, server: int, url: str) -> None:
    wait_for(lambda: not group_alive(worker), timeout=30, what="the worker's process group to end")
    wait_for(lambda: not group_alive(server), timeout=10, what="the session's redis-server to end")
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()


@pytest.mark.slow
def test_a_timed_out_test_leaves_no_worker_or_server(tmp_path: Path) -> None:
    process, pids = inner_session(tmp_path, "--timeout", "8")
    worker, server, url = started(pids)
    output, _ = process.communicate(timeout=90)
    assert process.returncode == 1, output.decode(errors="replace")
    assert b"Timeout" in output
    gone(worker, server, url)


@pytest.mark.slow
def test_a_killed_test_process_leaves_no_worker_or_server(tmp_path: Path) -> None:
    process, pids = inner_session(tmp_path)
    worker, server, url = started(pids)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    gone(worker, server, url)
