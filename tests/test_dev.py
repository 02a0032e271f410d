"""`synchub dev` starts the whole hub from nothing and leaves no process behind when stopped."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.identity import issue_token
from hub.dev import dev_secrets
from hub.dev_database import stop_database
from tests import signin
from tests.conftest import ROOT, clean_environ, wait_for


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_dev(home: Path) -> subprocess.Popen[str]:
    """`synchub dev` on free ports in `home`, with no SYNCHUB_* variable from this process."""
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "dev", "--port", "0"],
        cwd=home,
        env=clean_environ({"PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_dev(process: subprocess.Popen[str]) -> int:
    """What a service manager does: SIGTERM to the whole process group, then wait."""
    os.killpg(process.pid, signal.SIGTERM)
    return process.wait(timeout=60)


def crash(process: subprocess.Popen[str]) -> None:
    """SIGKILL to the dev hub and every process below it, as an OOM killer or a closed terminal might do."""
    for pid in {process.pid, *descendants(process.pid)}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def postgres_pid(home: Path) -> int:
    return int((home / ".synchub" / "postgres" / "postmaster.pid").read_text().split()[0])


@pytest.fixture
def home() -> Iterator[Path]:
    """A folder for a dev hub's .synchub/, straight in the system's temporary folder: run as root, the database
    server runs as its own user, which needs every folder above its data open to it, and pytest closes its own
    temporary tree to others whenever a pytest process starts."""
    folder = Path(tempfile.mkdtemp(prefix="synchub-dev-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dev_hubs(home: Path) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Start dev hubs in `home`; at the end each is stopped (or crashed, if it will not stop) and its
    database server too, which runs detached from the hub."""
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        started.append(start_dev(home))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            try:
                stop_dev(process)
            except subprocess.TimeoutExpired:
                crash(process)
    stop_database(home / ".synchub")


@pytest.fixture
def dev_hub(dev_hubs: Callable[[], subprocess.Popen[str]]) -> subprocess.Popen[str]:
    return dev_hubs()


def read_link(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"Open: (http://127\.0\.0\.1:\d+/dev/sign-in)\s", line)
        if match:
            return match.group(1)
    raise AssertionError(f"synchub dev printed no link; stderr: {process.stderr.read() if process.stderr else ''}")


def click_through_google(browser: httpx.Client, base: str) -> httpx.Response:
    """As a newcomer would: Connect Google, pick grace@sandbox.test, allow, land back on the page."""
    from tests.sandbox.browser import forms

    page = signin.start_connect(browser, base)
    chooser = browser.get(page.headers["location"])
    sandbox = page.headers["location"].split("/o/oauth2")[0]
    form = next(f for f in forms(chooser) if f.hidden.get("account") == "grace@sandbox.test")
    consent = browser.post(sandbox + form.action, data=form.hidden, follow_redirects=False)
    if consent.status_code == 200:
        consent_form = forms(consent)[0]
        data = {**consent_form.hidden, "scope": consent_form.checkboxes, "action": "allow"}
        consent = browser.post(sandbox + consent_form.action, data=data, follow_redirects=False)
    assert consent.status_code == 302, consent.text
    return browser.get(consent.headers["location"])


def synchub(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A `synchub` command in another shell in `home`: no SYNCHUB_* variable but those given."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=home,
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dev_serves_the_hub_and_stops_everything_on_ctrl_c(dev_hub: subprocess.Popen[str], home: Path) -> None:
    link = read_link(dev_hub)
    base = link.split("/dev/sign-in")[0]
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok"}
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        page = browser.get(link)
        assert page.status_code == 200 and "Connected accounts" in page.text
        connected = click_through_google(browser, base)
        assert "grace@sandbox.test" in connected.text
        wait_for(lambda: "40 contacts" in browser.get(f"{base}/").text, timeout=60, what="grace's contacts to sync")
        connection_id = only_connection(browser, base)["id"]

    below = home / "notes"
    below.mkdir()
    listed = synchub(below, "connections")  # .synchub/env is found from a folder below too, as git finds .git
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.strip().splitlines()
    assert header.split() == ["ID", "PROVIDER", "ACCOUNT", "WORKSPACE", "STATE"]
    assert row.split() == [connection_id, "google", "grace@sandbox.test", "demo-workspace", "active"]
    synced = synchub(home, "sync", connection_id)
    assert synced.returncode == 0 and "contacts: succeeded · 0 new, 0 changed, 0 deleted" in synced.stderr, synced
    worker_log = [json.loads(line) for line in (home / ".synchub" / "worker.log").read_text().splitlines()]
    ended = [line for line in worker_log if line["message"] == "run slice ended"]
    assert ended and all(line["connection_id"] == connection_id and line["run_id"] for line in ended), ended
    disabled = synchub(home, "sync", connection_id, SYNCHUB_CONNECTORS="")
    assert disabled.returncode == 1
    assert "no connector is enabled, so there is nothing to sync: set SYNCHUB_CONNECTORS" in disabled.stderr
    with signed_in(link) as (browser, _):
        demo_calendar(browser, base)
    second = synchub(home, "dev", "--port", "0")
    assert second.returncode == 2
    assert f"a dev hub is already running in {home / '.synchub'} (pid {dev_hub.pid}, at {base})" in second.stderr
    assert httpx.get(f"{base}/healthz").status_code == 200, "the refused second hub must leave the first alone"

    state = home / ".synchub"
    assert (state / "postgres" / "PG_VERSION").is_file() and (state / "sandbox.state").is_file()
    assert (state / "radicale" / "collections").is_dir()
    assert {oct((state / name).stat().st_mode & 0o777) for name in ("dev.env", "env", "sandbox.state")} == {"0o600"}
    started, database = descendants(dev_hub.pid), postgres_pid(home)
    assert len(started) >= 5, "expected redis, the sandbox, api, worker and beat"

    os.kill(dev_hub.pid, signal.SIGINT)
    assert dev_hub.wait(timeout=60) == 0
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=15, what="every started process to exit")
    assert not alive(database), "the dev hub's PostgreSQL outlived it"
    assert not (state / "env").exists(), "a stopped hub's environment would send commands to nothing"


def demo_calendar(browser: httpx.Client, base: str) -> None:
    """The dev hub's Radicale, as its connect form tells a newcomer to type it: two calendars of events, and
    the form connects it."""
    import caldav

    form = browser.get(f"{base}/connect/caldav")
    said = re.search(r"server URL (\S+), username (\S+), app password ([^.<\s]+)", form.text)
    assert said, form.text
    url, username, password = said.groups()
    url = url.rstrip(",")
    with caldav.DAVClient(url=url, username=username, password=password, timeout=10) as client:
        calendars = client.principal().calendars()
        assert sorted(c.get_display_name() for c in calendars) == ["Home", "Work"]
        assert all(len(c.events()) >= 3 for c in calendars)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.text))
    fields.update(server_url=url, username=username, password=password)
    connected = browser.post(f"{base}/connect/caldav", data=fields, headers={"Origin": base}, follow_redirects=False)
    assert connected.status_code == 303 and "connected=" in connected.headers["location"], connected.text


def test_dev_reuses_its_secrets_stops_all_when_a_child_dies_and_starts_after_a_crash(
    dev_hubs: Callable[[], subprocess.Popen[str]], home: Path
) -> None:
    dev_hub = dev_hubs()
    read_link(dev_hub)
    secrets_before = (home / ".synchub" / "dev.env").read_text()
    started = descendants(dev_hub.pid)
    api = next(pid for pid in started if b" api" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "))
    os.kill(api, signal.SIGKILL)
    assert dev_hub.wait(timeout=60) == 1
    assert dev_hub.stderr is not None and "api exited" in dev_hub.stderr.read()
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=15, what="every started process to exit")

    again = dev_hubs()
    read_link(again)
    assert (home / ".synchub" / "dev.env").read_text() == secrets_before
    database = postgres_pid(home)
    crash(again)
    assert alive(database), "the database server runs detached from the hub, so a crash leaves it running"

    third = dev_hubs()
    with signed_in(read_link(third)) as (browser, base):
        assert browser.get(f"{base}/healthz").json()["database"] == "ok"
    assert stop_dev(third) == 0
    assert not alive(database), "the hub after a crash stops the database server it found running"


@contextmanager
def signed_in(link: str) -> Iterator[tuple[httpx.Client, str]]:
    """A browser that followed the dev hub's link, and the hub's base URL."""
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        assert browser.get(link).status_code == 200
        yield browser, link.split("/dev/sign-in")[0]


def only_connection(browser: httpx.Client, base: str) -> dict[str, Any]:
    (connection,) = browser.get(f"{base}/api/v1/connections").json()["connections"]
    found: dict[str, Any] = connection
    return found


def ended_run(browser: httpx.Client, base: str, run_id: str | None = None) -> dict[str, Any] | None:
    """The contacts capability's last run once it has ended (and is `run_id`, if given)."""
    connection = only_connection(browser, base)
    run = next(c for c in connection["capabilities"] if c["name"] == "contacts")["last_run"]
    if run and run["status"] in ("succeeded", "failed", "cancelled") and run_id in (None, run["id"]):
        return {**run, "connection_status": connection["status"]}
    return None


def sandbox_of(browser: httpx.Client, base: str) -> str:
    """The sandbox this hub sends people to, read from its connect link as a browser would follow it."""
    location = signin.start_connect(browser, base).headers["location"]
    return str(location.split("/o/oauth2")[0])


def test_a_restarted_dev_hub_keeps_each_connection_syncing(
    dev_hubs: Callable[[], subprocess.Popen[str]], home: Path
) -> None:
    from sandbox.admin_client import SandboxAdmin

    first = dev_hubs()
    with signed_in(read_link(first)) as (browser, base):
        click_through_google(browser, base)
        run = wait_for(lambda: ended_run(browser, base), timeout=60, what="the first sync")
        assert run["status"] == "succeeded" and run["counts"]["created"] == 40
    assert stop_dev(first) == 0

    second = dev_hubs()
    with signed_in(read_link(second)) as (browser, base):
        with SandboxAdmin(sandbox_of(browser, base)) as sandbox:
            sandbox.add_contact("grace@sandbox.test", {"names": [{"givenName": "Anita", "familyName": "Borg"}]})
        connection_id = only_connection(browser, base)["id"]
        secret = dev_secrets(home / ".synchub")["SYNCHUB_IDENTITY__JWT_SECRET"]
        bearer = {"Authorization": f"Bearer {issue_token(secret, 'demo-user', 'demo-workspace', 600)}"}
        answer = browser.post(f"{base}/api/v1/connections/{connection_id}/sync", headers=bearer)
        run_id = answer.json()["runs"]["contacts"]
        run = wait_for(lambda: ended_run(browser, base, run_id), timeout=60, what="the sync after the restart")
    outcome = (run["status"], run["error"], run["connection_status"])
    assert outcome == ("succeeded", None, "active"), " / ".join(map(str, outcome))
    assert run["full_sync"] is False and run["counts"] == {"created": 1, "updated": 0, "deleted": 0}
    assert stop_dev(second) == 0


def test_repo_ignores_dev_state() -> None:
    assert ".synchub/" in (ROOT / ".gitignore").read_text().splitlines()
