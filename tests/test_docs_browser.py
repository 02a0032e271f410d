"""A real browser (Debian's chromium through Playwright) opens /docs with no network and sees the operations."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Route, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_docs_list_the_operations_offline_under_the_csp(live_api: str, tmp_path: Path) -> None:
    blocked: list[str] = []
    console_errors: list[str] = []
    page_errors: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.route("**/*", only_loopback)
            page.on("console", on_console)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            response = page.goto(f"{live_api}/docs", wait_until="load")
            assert response is not None and response.status == 200
            assert blocked == [], f"/docs needed the network: {blocked}"
            csp = response.headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            page.locator(".opblock").first.wait_for(state="visible", timeout=15_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert page.locator(".opblock").count() >= 5
            page.locator(".opblock-summary", has_text="/api/v1/connections").first.click()
            page.locator(".opblock-body .responses-wrapper").first.wait_for(state="visible", timeout=5_000)
            page.wait_for_load_state("networkidle")
        finally:
            browser.close()
    assert blocked == [], f"/docs needed the network: {blocked}"
    assert "/api/v1/connections" in {path.replace("\u200b", "") for path in paths}
    assert [text for text in console_errors if "Content Security Policy" in text] == []
    assert console_errors == [] and page_errors == []
