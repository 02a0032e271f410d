"""The settings page's connected accounts and `GET /api/v1/connections`: status pills derived from the runs and
the connection's status (every pill, reached for real), per-account cards, "Sync now", disconnect with the choice
of keeping or deleting the data, removing a disconnected account, the banner after connecting, and live progress
in a real browser (Debian's chromium through Playwright) without reloading."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import BrowserContext, sync_playwright

from tests import signin
from tests.conftest import ROOT, Worker, wait_for
from tests.google.conftest import CONTACTS_SCOPE, GoogleHub, new_account
from tests.test_docs_browser import CHROMIUM, CHROMIUM_ARGS

PEOPLE = "/v1/people"
SCREENSHOTS = ROOT / "test-artifacts" / "settings"
"""Each browser step's screenshot, kept after the run (git-ignored)."""
JARGON = ("Needs reauth", "needs_reauth", "grant access Grant access", "Authorization", "Bearer", ">synced<", "scope")


@pytest.fixture(scope="module")
def hub(google_hub_factory: Callable[..., GoogleHub]) -> Iterator[GoogleHub]:
    started = google_hub_factory(
        SYNCHUB_CONNECTORS="google_contacts,google_calendar",
        SYNCHUB_SCHEDULE__MAX_ATTEMPTS="1",
        SYNCHUB_RETENTION_DAYS="30",
    )
    worker = Worker(started.env, queues="sync,maintenance", concurrency=1).start()
    yield started
    worker.stop()
    started.admin.clear_faults()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium")), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield context
        context.close()


def pills(hub: GoogleHub, browser: httpx.Client, connection_id: uuid.UUID) -> tuple[str, str]:
    """The account's pill and its contacts capability's, from `GET /api/v1/connections` (the list). The calendar,
    never asked for, is offered and has no pill: it never makes the account need attention."""
    answer = browser.get(f"{hub.url}/api/v1/connections")
    assert answer.status_code == 200, answer.text
    view = next(c for c in answer.json()["connections"] if c["id"] == str(connection_id))
    found = {c["name"]: c for c in view["capabilities"]}
    assert found["calendar"]["pill"] is None and found["calendar"]["enabled"] is False
    if view["status"] == "active":
        assert found["calendar"]["offer"]["kind"] == "grant_access"
    return view["pill"]["key"], found["contacts"]["pill"]["key"]


def card(hub: GoogleHub, browser: httpx.Client, connection_id: uuid.UUID) -> str:
    """The account's card on the settings page, as HTML."""
    page = browser.get(f"{hub.url}/")
    assert page.status_code == 200, page.text
    section = rf'<section class="connection card" id="connection-{connection_id}".*?</section>'
    found = re.search(section, page.text, re.S)
    assert found, page.text
    text = found.group(0)
    for word in JARGON:
        assert word not in text, f"{word!r} on the page: {text}"
    return text


def connected(hub: GoogleHub, user: str, contacts: int = 5) -> tuple[httpx.Client, str, uuid.UUID]:
    browser = hub.browser(user=user)
    account = new_account(hub.admin, contacts=contacts)
    connection_id = hub.connect(browser, account)
    assert hub.wait_run(browser, connection_id)["status"] == "succeeded"
    return browser, account, connection_id


def sync_from_page(hub: GoogleHub, browser: httpx.Client, connection_id: uuid.UUID) -> httpx.Response:
    return browser.post(f"{hub.url}/connections/{connection_id}/capabilities/contacts/sync", follow_redirects=False)


def test_a_first_import_reads_syncing_with_0_contacts_then_up_to_date(hub: GoogleHub) -> None:
    browser = hub.browser(user="first-import")
    account = new_account(hub.admin, contacts=150)
    hub.admin.set_faults([{"path_prefix": PEOPLE, "latency_ms": 1500}])
    try:
        connection_id = hub.connect(browser, account)
        view = hub.connection(browser, connection_id)
        assert view["records"].get("contacts", 0) == 0
        assert pills(hub, browser, connection_id) == ("syncing", "syncing")
        landed = browser.get(f"{hub.url}/?connected={connection_id}").text
        banner = re.search(r'<div class="banner" role="status" id="connected-banner">(.*?)</div>', landed, re.S)
        assert banner, landed
        assert f"Connected {account} (Google)" in banner.group(1) and "will sync contacts" in banner.group(1)
        shown = card(hub, browser, connection_id)
        assert ">Syncing<" in shown and "Up to date" not in shown
    finally:
        hub.admin.clear_faults()
    assert hub.wait_run(browser, connection_id)["status"] == "succeeded"
    assert pills(hub, browser, connection_id) == ("up_to_date", "up_to_date")
    shown = card(hub, browser, connection_id)
    assert ">Up to date<" in shown and ">Syncing<" not in shown
    assert 'href="/api/v1/contacts">150 contacts</a>' in shown
    exact = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    last = re.search(rf'Last synced <time datetime="[^"]+" title="{exact}">(just now|\d+ seconds? ago)</time>', shown)
    assert last, shown
    assert re.search(r"Next sync <time [^>]+>in \d+ (minutes|hours?)</time>", shown), shown
    assert "Syncs every" in shown and ">Sync now</button>" in shown
    assert "connected-banner" not in browser.get(f"{hub.url}/").text, "the banner shows only after connecting"


def test_a_failed_sync_needs_attention_and_sync_now_from_the_page_clears_it(hub: GoogleHub) -> None:
    browser, _account, connection_id = connected(hub, "failing")
    assert sync_from_page(hub, hub.browser(user="someone-else"), connection_id).status_code == 404
    forged = httpx.post(
        f"{hub.url}/connections/{connection_id}/capabilities/contacts/sync",
        cookies=browser.cookies,
        headers={"Origin": hub.url},
    )
    assert forged.status_code == 403, "no CSRF token: refused"
    hub.admin.set_faults([{"path_prefix": PEOPLE, "status": 500}])
    try:
        answer = sync_from_page(hub, browser, connection_id)
        assert answer.status_code == 303 and answer.headers["location"] == f"/#connection-{connection_id}"
        assert hub.wait_run(browser, connection_id)["status"] == "failed"
    finally:
        hub.admin.clear_faults()
    view = hub.connection(browser, connection_id)
    assert (view["pill"]["key"], view["pill"]["words"]) == ("attention", "Needs your attention")
    assert view["pill"]["action"]["kind"] == "sync_now" and pills(hub, browser, connection_id)[1] == "attention"
    assert "500" in view["last_error"]["words"] and "Sync now" in view["last_error"]["what_to_do"]
    shown = card(hub, browser, connection_id)
    assert ">Needs your attention<" in shown and "failed even after retrying" in shown and ">Sync now</button>" in shown
    assert sync_from_page(hub, browser, connection_id).status_code == 303
    wait_for(lambda: pills(hub, browser, connection_id) == ("up_to_date", "up_to_date"), what="the retried sync")


def test_reconnect_and_grant_access_need_attention_each_with_why(hub: GoogleHub) -> None:
    browser, account, revoked = connected(hub, "lost-access")
    hub.admin.revoke_grant(account, hub.client_id)
    hub.admin.expire_access_tokens(account=account, client_id=hub.client_id)
    assert hub.sync_now(browser, revoked)["status"] == "failed"
    view = hub.connection(browser, revoked)
    assert view["status"] == "needs_reauth" and pills(hub, browser, revoked) == ("attention", "attention")
    action = view["pill"]["action"]
    assert action["kind"] == "reconnect" and action["href"] == f"/connect/google?reconnect={revoked}"
    shown = card(hub, browser, revoked)
    assert "no longer accepts synchub&#39;s access" in shown and f'href="/connect/google?reconnect={revoked}"' in shown
    assert ">Sync now</button>" not in shown

    browser, account, narrowed = connected(hub, "narrowed")
    assert hub.admin.narrow_grant(account, hub.client_id, [CONTACTS_SCOPE]) >= 1
    assert hub.sync_now(browser, narrowed)["status"] == "failed"
    view = hub.connection(browser, narrowed)
    assert view["status"] == "active" and pills(hub, browser, narrowed) == ("attention", "attention")
    assert view["pill"]["action"]["kind"] == "grant_access"
    shown = card(hub, browser, narrowed)
    contacts = shown.split(f'id="cap-{narrowed}-contacts"')[1].split("</li>")[0]
    assert len(re.findall(r">Grant access</a>", contacts)) == 1 and contacts.lower().count("grant access") == 1
    assert "has not given synchub permission to read your contacts" in contacts
    calendar = shown.split(f'id="cap-{narrowed}-calendar"')[1].split("</li>")[0]
    assert "(not synced)" in calendar and "permission to read your calendar" in calendar and "Grant access" in calendar


def test_paused_disconnect_keep_or_delete_and_remove(hub: GoogleHub) -> None:
    browser, _account, kept = connected(hub, "leaving", contacts=7)
    schedule = f"{hub.url}/connections/{kept}/capabilities/contacts/schedule"
    assert browser.post(schedule, data={"interval": "3600"}, follow_redirects=False).status_code == 303
    assert hub.capability(browser, kept)["schedule"]["interval_seconds"] == 3600
    assert browser.post(schedule, data={"interval": "61"}).status_code == 409
    assert '<option value="3600" selected>every hour</option>' in card(hub, browser, kept)
    sharing = f"{hub.url}/connections/{kept}/sharing"
    shared = browser.post(sharing, data={"sharing": "workspace"}, follow_redirects=False)
    assert shared.status_code == 303 and hub.connection(browser, kept)["sharing"] == "workspace"
    assert '<option value="workspace" selected>Everyone in ws-g</option>' in card(hub, browser, kept)
    assert browser.post(f"{hub.url}/api/v1/connections/{kept}/pause").status_code == 200
    assert pills(hub, browser, kept) == ("paused", "paused") and ">Paused<" in card(hub, browser, kept)
    refused = browser.post(f"{hub.url}/api/v1/connections/{kept}/remove")
    assert refused.status_code == 409 and "disconnect the account first" in refused.text

    confirm = browser.get(f"{hub.url}/connections/{kept}/disconnect")
    assert confirm.status_code == 200, confirm.text
    assert "Keep the synced data" in confirm.text and "Delete the synced data now" in confirm.text
    assert "Kept for 30 days after disconnecting" in confirm.text and "7 contacts" in confirm.text
    done = browser.post(f"{hub.url}/connections/{kept}/disconnect", data={"data": "keep"}, follow_redirects=False)
    assert done.status_code == 303
    assert pills(hub, browser, kept) == ("disconnected", "disconnected")
    shown = card(hub, browser, kept)
    assert ">Disconnected<" in shown and "Up to date" not in shown and "kept until" in shown
    assert 'href="/api/v1/contacts">7 contacts</a>' in shown and ">Remove from the list</button>" in shown

    browser2, _account, deleted = connected(hub, "leaving", contacts=4)
    done = browser2.post(f"{hub.url}/connections/{deleted}/disconnect", data={"data": "delete"}, follow_redirects=False)
    assert done.status_code == 303
    view = hub.connection(browser2, deleted)
    assert view["pill"]["key"] == "disconnected" and view["records"].get("contacts", 0) == 0
    assert "Nothing synced from it is kept" in card(hub, browser2, deleted)

    removed = browser.post(f"{hub.url}/connections/{kept}/remove", follow_redirects=False)
    assert removed.status_code == 303
    assert browser.get(f"{hub.url}/api/v1/connections/{kept}").status_code == 404
    assert f"connection-{kept}" not in browser.get(f"{hub.url}/").text
    assert hub.contacts(browser, kept) == []
    by_api = browser.post(f"{hub.url}/api/v1/connections/{deleted}/remove")
    assert by_api.status_code == 200 and by_api.json()["removed"] is True
    assert [c["id"] for c in browser.get(f"{hub.url}/api/v1/connections").json()["connections"]] == []
    paths = httpx.get(f"{hub.url}/openapi.json").json()["paths"]
    assert "disconnect it first" in paths["/api/v1/connections/{connection_id}/remove"]["post"]["description"]
    assert not {"/", "/connections/{connection_id}/disconnect", "/connections/{connection_id}/remove"} & set(paths)


def test_the_browser_sees_progress_move_without_reloading(hub: GoogleHub, chromium: BrowserContext) -> None:
    account = new_account(hub.admin, contacts=300)
    csp_errors: list[str] = []
    page = chromium.new_page()
    page.set_default_timeout(20_000)
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(signin.signin_link(hub.url, hub.jwt_secret, "watcher", "ws-g"))
    page.get_by_role("link", name="Connect Google").click()
    hub.admin.set_faults([{"path_prefix": PEOPLE, "latency_ms": 700}])
    try:
        page.get_by_role("button", name="Continue to Google").click()
        page.get_by_role("button", name=re.compile(re.escape(account))).click()
        for box in page.locator('input[name="scope"]').all():  # Google's consent: a box per kind of access
            box.check()
        page.get_by_role("button", name="Continue", exact=True).click()
        page.wait_for_url(re.compile(r"/\?connected="))
        told = page.get_by_role("status").inner_text()
        assert f"Connected {account} (Google). synchub will sync contacts" in told, told
        assert "Calendars: choose what to sync below" in told, told
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "1-connected-syncing.png"), full_page=True)
        page.evaluate("window.sameDocument = true")
        progress = page.locator('[data-progress$="/contacts"]')
        seen: list[str] = []

        def moved() -> bool:
            text = progress.inner_text().strip()
            if re.fullmatch(r"\d+ of 300 contacts so far", text) and text not in seen:
                seen.append(text)
            return len(seen) >= 2

        wait_for(moved, timeout=60, interval=0.1, what="two different progress values on the page")
    finally:
        hub.admin.clear_faults()
    pill = page.locator("section.connection [data-pill]").first
    wait_for(lambda: pill.inner_text() == "Up to date", timeout=60, what="the pill to turn Up to date")
    records = page.locator("a.records").first
    wait_for(lambda: records.inner_text() == "300 contacts", timeout=10, what="the record count to follow")
    assert page.evaluate("window.sameDocument === true"), "the page was never reloaded"
    page.screenshot(path=str(SCREENSHOTS / "2-up-to-date.png"), full_page=True)
    assert page.locator("button", has_text="Sync now").count() == 1, "none for calendars while none is chosen"
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll on a phone"
    page.screenshot(path=str(SCREENSHOTS / "3-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("link", name="Disconnect…").click()
    assert "Kept for 30 days after disconnecting" in page.locator("body").inner_text()
    page.get_by_label("Delete the synced data now").check()
    page.screenshot(path=str(SCREENSHOTS / "4-disconnect.png"), full_page=True)
    page.get_by_role("button", name="Disconnect").click()
    page.wait_for_url(re.compile(r"/#connection-"))
    assert page.locator("section.connection [data-pill]").first.inner_text() == "Disconnected"
    assert page.locator("a.records").first.inner_text() == "0 contacts"
    page.screenshot(path=str(SCREENSHOTS / "5-disconnected.png"), full_page=True)
    page.close()
    assert csp_errors == []


def test_a_run_waiting_out_a_rate_limit_reads_syncing_and_says_it_waits(hub: GoogleHub) -> None:
    """Last in the module: the 429 pauses the hub's shared Google bucket for every run until its Retry-After."""
    browser, _account, connection_id = connected(hub, "throttled")
    hub.admin.set_faults([{"path_prefix": PEOPLE, "status": 429, "retry_after": 30}])
    try:
        assert sync_from_page(hub, browser, connection_id).status_code == 303
        waiting = wait_for(
            lambda: (run := hub.capability(browser, connection_id)["current_run"]) and run["status"] == "waiting",
            what="the run to wait out the provider's Retry-After",
        )
    finally:
        hub.admin.clear_faults()
    assert waiting and pills(hub, browser, connection_id) == ("syncing", "syncing")
    shown = card(hub, browser, connection_id)
    assert ">Syncing<" in shown and "Waiting to try again: " in shown and "will retry" not in shown
    gone = browser.post(f"{hub.url}/connections/{connection_id}/disconnect", data={"data": "delete"})
    assert gone.status_code == 303 and hub.capability(browser, connection_id)["current_run"] is None
