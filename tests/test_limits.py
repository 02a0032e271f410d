"""Request bodies are capped as their bytes arrive, chunked or not, and a refused input is never echoed back."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from hub.app import create_app
from tests.conftest import ROOT, LiveServer, clean_environ, settings_from_env, wait_for
from tests.servers import free_port, kill_group, spawn

MiB = 1024 * 1024


def schedule_url(base: str) -> str:
    """A route that takes a JSON body; its caller's identity is checked only after FastAPI has read the body."""
    return f"{base}/api/v1/connections/{uuid.uuid4()}/schedule/contacts"


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """`total` bytes made as they are sent: httpx sends a generator chunked, with no Content-Length."""
    block = b"x" * size
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.fixture
def api_process(hub_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`synchub api` as its own process, so its memory is its own."""
    port = free_port()
    with (tmp_path / "api.log").open("wb") as log:
        process = spawn(
            [sys.executable, "-m", "hub", "api", "--port", str(port)],
            env=clean_environ(hub_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, (tmp_path / "api.log").read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(answers, timeout=30, what="the API process to answer")
    yield url, process.pid
    kill_group(process)


def test_a_chunked_50_mb_body_is_cut_off_with_413_without_growing_the_api(api_process: tuple[str, int]) -> None:
    url, pid = api_process
    for _ in range(3):  # warm up: the first requests import and allocate what every request needs
        httpx.put(schedule_url(url), json={"interval_seconds": 900})
    before = peak_rss(pid)
    response = httpx.put(schedule_url(url), content=chunks(50 * MiB), timeout=60)
    grown = peak_rss(pid) - before
    assert grown < 8 * MiB, f"the API's peak memory grew by {grown / MiB:.1f} MiB"
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"] == "request too large"
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_sent(api_process: tuple[str, int]) -> None:
    url, _pid = api_process
    path = schedule_url(url).removeprefix(url)
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {50 * MiB}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "connection: close" in answer.lower()


def test_the_cap_is_a_setting_and_a_route_prefix_may_set_its_own(
    hub_env: dict[str, str], engine: Engine, user_token: Callable[..., str]
) -> None:
    settings = settings_from_env({**hub_env, "SYNCHUB_HTTP__MAX_BODY_BYTES": "4096"})
    app = create_app(settings, engine)
    connection = f"/api/v1/connections/{uuid.uuid4()}"
    app.state.body_caps.route(f"{connection}/schedule/", 16 * 1024)
    with LiveServer(app) as server:
        bearer = {"authorization": f"Bearer {user_token()}"}
        schedule = f"{server.url}{connection}/schedule/contacts"
        resource = f"{server.url}{connection}/capabilities/contacts/resources/{uuid.uuid4()}"
        assert httpx.put(resource, content=chunks(8 * 1024), headers=bearer).status_code == 413
        assert httpx.put(resource, content=chunks(2 * 1024), headers=bearer).status_code == 422
        assert httpx.put(schedule, content=chunks(8 * 1024), headers=bearer).status_code == 422
        over = httpx.put(schedule, content=chunks(32 * 1024), headers=bearer)
        assert over.status_code == 413 and over.json()["error"] == "request too large"


def test_a_validation_error_does_not_echo_the_input(live_api: str, user_token: Callable[..., str]) -> None:
    bearer = {"authorization": f"Bearer {user_token()}"}
    marker = "echo-" + "y" * 300_000
    refused = httpx.put(schedule_url(live_api), json={"interval_seconds": marker}, headers=bearer)
    assert refused.status_code == 422
    assert "echo-" not in refused.text and len(refused.content) < 2000, refused.text[:300]
    errors = refused.json()["detail"]
    assert errors[0]["loc"] == ["body", "interval_seconds"] and "integer" in errors[0]["msg"]
    keyed = httpx.put(schedule_url(live_api), json={marker: 1}, headers=bearer)
    assert keyed.status_code == 422 and "echo-" not in keyed.text and len(keyed.content) < 2000
