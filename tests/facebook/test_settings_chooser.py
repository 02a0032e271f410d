"""The settings page's Page chooser: a checkbox per Page, saved by a form POST that needs the session's CSRF token."""

from __future__ import annotations

import re

import httpx

from core.identity import issue_token
from tests.facebook.conftest import CAPABILITY, FacebookHub, forms


def test_the_settings_page_chooses_pages_with_checkboxes_and_a_csrf_checked_post(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(forms_per_page=1, leads=2, pages=2)
    first, second = (page["name"] for page in fb_user["pages"])
    browser = hub.browser(user="page-chooser")
    connection_id = hub.connect(browser, fb_user["id"])
    settings = browser.get(f"{hub.url}/")
    assert "Pages: none chosen yet" in settings.text
    link = f"/connections/{connection_id}/capabilities/{CAPABILITY}/resources"
    assert f'href="{link}">Choose Pages</a>' in settings.text

    chooser = browser.get(hub.url + link)
    assert chooser.status_code == 200, chooser.text
    (form,) = forms(chooser)
    ids = form.boxes("resource")
    assert len(ids) == 2 and all(f"{name}</label>" in chooser.text for name in (first, second)), chooser.text
    by_name = {name: hub.pages(browser, connection_id)[name]["id"] for name in (first, second)}
    assert set(ids) == set(by_name.values())

    # The session's cookie alone, from this site's own page but without the form's CSRF token: refused.
    with httpx.Client(cookies=browser.cookies, headers={"Origin": hub.url}) as forged:
        refused = forged.post(hub.url + link, data={"resource": by_name[first]})
    assert refused.status_code == 403, refused.text
    assert not any(page["selected"] for page in hub.pages(browser, connection_id).values())

    mark = hub.mark()
    saved = browser.post(hub.url + form.action, data={**form.hidden(), "resource": [by_name[first]]})
    assert saved.status_code == 303 and saved.headers["location"] == "/", saved.text
    assert {name: page["selected"] for name, page in hub.pages(browser, connection_id).items()} == {
        first: True,
        second: False,
    }
    assert f"Pages: {first}" in browser.get(f"{hub.url}/").text
    subscribed = [c["path"] for c in hub.graph_calls(mark) if c["method"] == "POST"]
    assert [path for path in subscribed if path.endswith("/subscribed_apps")] == [
        f"/{fb_user['pages'][0]['id']}/subscribed_apps"
    ]
    hub.wait_run(hub.capability(browser, connection_id)["last_run"]["id"])
    counted = re.search(r'href="/api/v1/leads">(\d+) leads</a>', browser.get(f"{hub.url}/").text)
    assert counted and counted.group(1) == "2"

    (form,) = forms(browser.get(hub.url + link))
    mark = hub.mark()
    unticked = browser.post(hub.url + form.action, data=form.hidden())
    assert unticked.status_code == 303, unticked.text
    assert not any(page["selected"] for page in hub.pages(browser, connection_id).values())
    assert [c["path"] for c in hub.graph_calls(mark) if c["method"] == "DELETE"] == [
        f"/{fb_user['pages'][0]['id']}/subscribed_apps"
    ]


def test_erasing_the_user_unsubscribes_their_page_and_revokes_the_grant(facebook_hub: FacebookHub) -> None:
    hub = facebook_hub
    fb_user = hub.facebook.user(forms_per_page=1, leads=2, pages=1)
    page = fb_user["pages"][0]
    browser = hub.browser(user="page-eraser", workspace="ws-erase-f")
    connection_id = hub.connect(browser, fb_user["id"])
    assert hub.backfill(browser, connection_id, page["name"])["status"] == "succeeded"
    assert len(hub.leads(browser)) == 2

    mark = hub.mark()
    token = issue_token(hub.jwt_secret, "page-eraser", "ws-erase-f", 600)
    answer = httpx.delete(f"{hub.url}/api/v1/privacy/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["provider_undo"] == "done" and answer.json()["connections"][0]["revoked_at_provider"]
    deleted = [c["path"] for c in hub.graph_calls(mark) if c["method"] == "DELETE"]
    assert f"/{page['id']}/subscribed_apps" in deleted, "the Page was unsubscribed"
    assert any(path.endswith("/me/permissions") for path in deleted), "the grant was revoked"
    assert hub.leads(browser) == [] and browser.get(f"{hub.url}/api/v1/connections").json()["connections"] == []
