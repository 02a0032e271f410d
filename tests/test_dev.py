"""`synchub dev` starts the whole hub from nothing and leaves no process behind when stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

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


@pytest.fixture
def dev_hub(tmp_path: Path) -> subprocess.Popen[str]:
    env = clean_environ({"PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "dev", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_link(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"Open: (http://127\.0\.0\.1:\d+/session\?\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"synchub dev printed no link; stderr: {process.stderr.read() if process.stderr else ''}")


def click_through_google(browser: httpx.Client, base: str) -> httpx.Response:
    """As a newcomer would: Connect Google, pick grace@sandbox.test, allow, land back on the page."""
    from tests.sandbox.browser import forms

    page = browser.get(f"{base}/connect/google", follow_redirects=False)
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


def test_dev_serves_the_hub_and_stops_everything_on_ctrl_c(dev_hub: subprocess.Popen[str], tmp_path: Path) -> None:
    link = read_link(dev_hub)
    base = link.split("/session")[0]
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok"}
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        page = browser.get(link)
        assert page.status_code == 200 and "Connected accounts" in page.text
        connected = click_through_google(browser, base)
        assert "grace@sandbox.test" in connected.text
        wait_for(lambda: "40 contacts" in browser.get(f"{base}/").text, timeout=60, what="grace's contacts to sync")

    state = tmp_path / ".synchub"
    assert (state / "synchub.sqlite").is_file()
    assert oct((state / "dev.env").stat().st_mode & 0o777) == "0o600"
    started = descendants(dev_hub.pid)
    assert len(started) >= 4, "expected redis, api, worker and beat"

    os.kill(dev_hub.pid, signal.SIGINT)
    assert dev_hub.wait(timeout=60) == 0
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=15, what="every started process to exit")


def test_dev_reuses_its_secrets_and_stops_all_when_a_child_dies(dev_hub: subprocess.Popen[str], tmp_path: Path) -> None:
    read_link(dev_hub)
    secrets_before = (tmp_path / ".synchub" / "dev.env").read_text()
    started = descendants(dev_hub.pid)
    api = next(pid for pid in started if b" api" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "))
    os.kill(api, signal.SIGKILL)
    assert dev_hub.wait(timeout=60) == 1
    assert dev_hub.stderr is not None and "api exited" in dev_hub.stderr.read()
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=15, what="every started process to exit")

    again = subprocess.Popen(
        [sys.executable, "-m", "hub", "dev", "--port", "0"],
        cwd=tmp_path,
        env=clean_environ({"PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        read_link(again)
        assert (tmp_path / ".synchub" / "dev.env").read_text() == secrets_before
    finally:
        os.killpg(again.pid, signal.SIGTERM)
        again.wait(timeout=60)


def test_repo_ignores_dev_state() -> None:
    assert ".synchub/" in (ROOT / ".gitignore").read_text().splitlines()
