"""A newcomer tries Facebook Lead Ads on `synchub dev` in a real browser (Debian's chromium through Playwright):
connect Facebook as the sandbox's Dana Demo, choose a Page, press the sandbox's "Submit a test lead", and see the
lead arrive on the settings page."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from sandbox.admin_client import SandboxAdmin
from tests.conftest import wait_for
from tests.test_dev import dev_hub, dev_hubs, home, read_link  # noqa: F401 - the fixtures, shared
from tests.test_docs_browser import CHROMIUM, CHROMIUM_ARGS

LEADS = re.compile(r"(\d+) leads")


def leads_shown(page: Page, base: str) -> int:
    """The lead count the settings page shows, as a newcomer reloading it would read it."""
    page.goto(f"{base}/")
    found = LEADS.search(page.locator("a.records").first.inner_text())
    return int(found.group(1)) if found else -1


def test_a_newcomer_sees_a_test_lead_arrive(dev_hub: subprocess.Popen[str], home: Path, tmp_path: Path) -> None:  # noqa: F811
    started = time.monotonic()
    link = read_link(dev_hub)
    base = link.split("/dev/sign-in")[0]
    assert dev_hub.stdout is not None
    told = "".join(dev_hub.stdout.readline() for _ in range(4))  # a line per played provider, then the rest
    testing = re.search(r'"Submit a test lead" at (http://\S+/lead-ads-testing)\.', told)
    assert testing, f"synchub dev did not say where to submit a test lead: {told!r}"
    sandbox = testing.group(1).split("/_sandbox")[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(link)
            page.get_by_role("link", name="Connect Facebook").click()
            page.get_by_role("button", name=re.compile("Continue to")).click()
            page.get_by_role("button", name="Continue as Dana Demo").click()
            page.get_by_role("button", name="Continue", exact=True).click()
            page.wait_for_url(f"{base}/**")
            assert "· Facebook" in page.locator("section.connection h2").inner_text()
            page.get_by_role("link", name="Choose Pages").click()
            page.get_by_label("Dana's Bakery").check()
            page.get_by_role("button", name="Save").click()
            page.wait_for_url(f"{base}/")
            assert "Pages: Dana's Bakery" in page.locator("body").inner_text()
            # Choosing the Page backfills its forms' 10 leads of the last 90 days.
            wait_for(lambda: leads_shown(page, base) == 10, timeout=20, what="the Page's backfill")

            page.goto(testing.group(1))
            page.get_by_label("Form").select_option(label="Dana's Bakery: Contact us")
            pressed = time.monotonic()
            page.get_by_role("button", name="Submit a test lead").click()
            page.get_by_role("status").wait_for()
            submitted = re.search(r"Lead (\d+) submitted", page.get_by_role("status").inner_text())
            assert submitted, page.get_by_role("status").inner_text()
            try:
                wait_for(lambda: leads_shown(page, base) == 11, timeout=10, what="the test lead on the settings page")
            except AssertionError:
                explain(page, sandbox, home / ".synchub")
                raise
            arrived = time.monotonic() - pressed
            leads = httpx.get(f"{base}/api/v1/leads", cookies=cookies(browser.cookies(base))).json()
        finally:
            browser.close()
    print(f"\ntest lead: button pressed -> visible on the settings page in {arrived:.2f}s")
    print(f"whole walk-through from `synchub dev` started: {time.monotonic() - started:.1f}s")
    assert len(leads["leads"]) == 11, leads
    with SandboxAdmin(sandbox) as admin:  # it came by the webhook (the poll is 15 minutes away)
        sent = admin.call("GET", "/facebook/webhooks/deliveries")
    assert [(d["leadgen_ids"], d["state"]) for d in sent] == [([submitted.group(1)], "delivered")], sent


def explain(page: Page, sandbox: str, state: Path) -> None:
    """What a failed wait for the lead needs to be understood: the page, the sandbox's last calls and
    deliveries, and the end of the worker's and the API's logs."""
    print(page.locator("body").inner_text())
    with SandboxAdmin(sandbox) as admin:
        for entry in admin.request_log()[-15:]:
            print(entry["method"], entry["path"], entry["status"])
        print(admin.call("GET", "/facebook/webhooks/deliveries"))
    for name in ("worker", "api"):
        print(name, (state / f"{name}.log").read_text()[-4000:])


def cookies(jar: Iterable[Mapping[str, object]]) -> dict[str, str]:
    return {str(cookie["name"]): str(cookie["value"]) for cookie in jar}
