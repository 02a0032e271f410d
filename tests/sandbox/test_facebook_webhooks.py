"""The fake Facebook's webhook sender: Meta's leadgen body, signed over the raw bytes, batched per app with an
entry per Page, redelivered with backoff, dropped on purpose, listed and re-sent; and the Lead Ads testing page."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.admin_client import SandboxAdmin
from sandbox.dev import FACEBOOK
from sandbox.process import running_sandbox, wait_until
from tests.sandbox.facebook import APP_ID, APP_SECRET, Facebook, Graph, Receiver, proof, running_receiver


@pytest.fixture
def receiver(facebook: Facebook) -> Iterator[Receiver]:
    """A callback the test app is subscribed to, and Dana's two Pages installed for leadgen; short batch window."""
    with running_receiver() as receiver:
        facebook.admin.subscribe_app(APP_ID, receiver.url, receiver.verify_token)
        facebook.admin.settings(webhook_batch_window=0.05, webhook_retry_first_delay=0.05, webhook_retry_window=0.5)
        for page_id, page_token in facebook.token()["page_tokens"].items():
            facebook.graph.ok("POST", f"/{page_id}/subscribed_apps", page_token, subscribed_fields="leadgen")
        yield receiver


def forms(facebook: Facebook) -> list[tuple[str, str]]:
    return [(page["id"], form["id"]) for page in facebook.dana()["pages"] for form in page["forms"]]


def signed(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_new_lead_is_posted_as_metas_leadgen_change_signed_over_the_raw_body(
    facebook: Facebook, receiver: Receiver
) -> None:
    page_id, form_id = forms(facebook)[0]
    lead_id = facebook.admin.add_leads(form_id, is_organic=False)["leads"][0]

    post = receiver.wait_for(lambda posts: len(posts) == 1)[0]

    lead = facebook.admin.lead(lead_id)
    assert post.headers["content-type"] == "application/json"
    assert post.headers["user-agent"] == "facebookexternalua"
    assert hmac.compare_digest(post.headers["x-hub-signature-256"], signed(APP_SECRET, post.body))
    assert "x-hub-signature" not in post.headers
    body = post.json()
    assert body["object"] == "page" and len(body["entry"]) == 1
    entry = body["entry"][0]
    assert entry["id"] == page_id and abs(entry["time"] - time.time()) < 5
    assert entry["changes"] == [
        {
            "field": "leadgen",
            "value": {
                "leadgen_id": lead_id,
                "page_id": page_id,
                "form_id": form_id,
                "adgroup_id": lead["ad_id"],
                "ad_id": lead["ad_id"],
                "created_time": int(lead["created_time"]),
            },
        }
    ]
    assert facebook.admin.deliveries()[0]["state"] == "delivered"


def test_leads_within_the_batch_window_arrive_in_one_post_with_an_entry_per_page(
    facebook: Facebook, receiver: Receiver
) -> None:
    (page_a, form_a), _, (page_b, form_b), _ = forms(facebook)
    facebook.admin.settings(webhook_batch_window=0.3)
    made = facebook.admin.add_leads(form_a, 2)["leads"] + facebook.admin.add_leads(form_b, 1)["leads"]

    post = receiver.wait_for(lambda posts: len(posts) == 1)[0]
    time.sleep(0.1)

    entries = post.json()["entry"]
    assert [e["id"] for e in entries] == [page_a, page_b]
    assert [c["value"]["leadgen_id"] for e in entries for c in e["changes"]] == made
    assert len(receiver.posts()) == 1


def test_a_batch_holds_at_most_the_maximum_number_of_changes(facebook: Facebook, receiver: Receiver) -> None:
    _, form_id = forms(facebook)[0]
    facebook.admin.settings(webhook_max_batch=2)

    made = facebook.admin.add_leads(form_id, 5, flush=True)

    posts = receiver.wait_for(lambda posts: len(posts) == 3)
    sizes = sorted(sum(len(e["changes"]) for e in p.json()["entry"]) for p in posts)
    assert sizes == [1, 2, 2] and len(made["deliveries"]) == 3


def test_ids_can_be_sent_as_json_numbers(facebook: Facebook, receiver: Receiver) -> None:
    page_id, form_id = forms(facebook)[0]
    facebook.admin.settings(webhook_ids_as_numbers=True)

    lead_id = facebook.admin.add_leads(form_id, flush=True)["leads"][0]

    entry = receiver.wait_for(lambda posts: len(posts) == 1)[0].json()["entry"][0]
    assert entry["id"] == int(page_id) and entry["changes"][0]["value"]["leadgen_id"] == int(lead_id)
    assert re.search(rb'"leadgen_id":\d+', receiver.posts()[0].body)


def test_a_delivery_not_answered_200_is_redelivered_with_backoff_until_it_is(
    facebook: Facebook, receiver: Receiver
) -> None:
    _, form_id = forms(facebook)[0]
    receiver.statuses.extend([500, 403])

    facebook.admin.add_leads(form_id, flush=True)

    posts = receiver.wait_for(lambda posts: len(posts) == 3)
    assert posts[0].body == posts[1].body == posts[2].body
    delivery = wait_until(lambda: facebook.admin.deliveries(state="delivered"), 5, "the delivery")[0]
    assert [a["status"] for a in delivery["attempts"]] == [500, 403, 200]
    gaps = [b["time"] - a["time"] for a, b in zip(delivery["attempts"], delivery["attempts"][1:], strict=False)]
    assert gaps[1] > gaps[0] >= 0.05


def test_a_delivery_unanswered_through_the_retry_window_fails_and_can_be_resent(
    facebook: Facebook, receiver: Receiver
) -> None:
    _, form_id = forms(facebook)[0]
    receiver.statuses.extend([503] * 20)
    facebook.admin.add_leads(form_id, flush=True)

    failed = wait_until(lambda: facebook.admin.deliveries(state="failed"), 5, "the delivery to fail")[0]
    tries = len(receiver.posts())
    receiver.statuses.clear()
    again = facebook.admin.resend(failed["id"])
    receiver.wait_for(lambda posts: len(posts) == tries + 1)

    assert 3 <= len(failed["attempts"]) == tries <= 5, "0.05 s doubling within a 0.5 s window"
    assert again["id"] != failed["id"] and again["body"] == failed["body"]
    assert wait_until(lambda: facebook.admin.deliveries(state="delivered"), 5, "the resend")[0]["id"] == again["id"]


def test_a_dropped_webhook_is_never_sent(facebook: Facebook, receiver: Receiver) -> None:
    _, form_id = forms(facebook)[0]
    facebook.admin.settings(drop_webhooks=True)

    facebook.admin.add_leads(form_id, flush=True)
    wait_until(lambda: facebook.admin.deliveries(state="dropped"), 5, "the delivery to be dropped")

    assert receiver.posts() == []
    assert [d["state"] for d in facebook.admin.deliveries()] == ["dropped"]


def test_a_page_that_unsubscribed_the_app_sends_no_webhook(facebook: Facebook, receiver: Receiver) -> None:
    (page_a, form_a), _, (_, form_b), _ = forms(facebook)
    page_token = facebook.token()["page_tokens"][page_a]
    facebook.graph.ok("DELETE", f"/{page_a}/subscribed_apps", page_token)

    silent = facebook.admin.add_leads(form_a, flush=True)
    heard = facebook.admin.add_leads(form_b, flush=True)

    post = receiver.wait_for(lambda posts: len(posts) == 1)[0]
    assert silent["webhook_apps"] == [] and heard["webhook_apps"] == [APP_ID]
    assert post.json()["entry"][0]["changes"][0]["value"]["leadgen_id"] == heard["leads"][0]


def test_the_lead_ads_testing_page_submits_a_test_lead_that_fires_the_webhook(
    facebook: Facebook, receiver: Receiver
) -> None:
    _, form_id = forms(facebook)[1]
    page = requests.get(facebook.url + "/_sandbox/facebook/lead-ads-testing", timeout=10)

    submitted = requests.post(
        facebook.url + "/_sandbox/facebook/lead-ads-testing", data={"form_id": form_id}, timeout=10
    )

    post = receiver.wait_for(lambda posts: len(posts) == 1)[0]
    lead_id = post.json()["entry"][0]["changes"][0]["value"]["leadgen_id"]
    assert f'value="{form_id}"' in page.text and "Submit a test lead" in page.text
    assert submitted.status_code == 200 and f"Lead {lead_id} submitted." in submitted.text
    assert facebook.admin.lead(lead_id)["form_id"] == form_id


def test_the_seed_gives_dana_two_pages_of_two_forms_and_twenty_leads(facebook: Facebook) -> None:
    dana = facebook.dana()

    assert [len(page["forms"]) for page in dana["pages"]] == [2, 2]
    assert sum(form["leads"] for page in dana["pages"] for form in page["forms"]) == 20


def test_the_dev_app_sends_leads_to_the_hubs_webhook_path(facebook: Facebook) -> None:
    with running_receiver() as receiver:
        public_url = receiver.url.removesuffix("/webhooks/facebook_leads")
        env = FACEBOOK.client_env(facebook.sandbox, facebook.url, public_url)
        app_id, secret = env["SYNCHUB_FACEBOOK__CLIENT_ID"], env["SYNCHUB_FACEBOOK__CLIENT_SECRET"]
        tokens = facebook.admin.mint_token(facebook.dana()["id"], app_id, ["pages_manage_metadata", "leads_retrieval"])
        page_id, page_token = next(iter(tokens["page_tokens"].items()))
        params = {
            "access_token": page_token,
            "appsecret_proof": proof(page_token, secret),
            "subscribed_fields": "leadgen",
        }
        requests.post(f"{facebook.url}/v25.0/{page_id}/subscribed_apps", data=params, timeout=10).raise_for_status()
        form_id = next(page["forms"][0]["id"] for page in facebook.dana()["pages"] if page["id"] == page_id)

        facebook.admin.add_leads(form_id, flush=True)

        post = receiver.wait_for(lambda posts: len(posts) == 1)[0]
    assert env["SYNCHUB_FACEBOOK__BASE_URL"] == facebook.url
    assert post.path == "/webhooks/facebook_leads"
    assert hmac.compare_digest(post.headers["x-hub-signature-256"], signed(secret, post.body))
    assert "Dana Demo" in FACEBOOK.accounts


def test_a_sandbox_restarted_on_its_state_file_keeps_tokens_and_subscriptions_and_still_sends(
    sandbox_session: object, tmp_path: Path
) -> None:
    state_file = tmp_path / "sandbox.state"
    with running_receiver() as receiver:
        with running_sandbox(seed=7, state_file=state_file) as url, SandboxAdmin(url) as admin:
            admin.facebook.register_app(APP_ID, APP_SECRET, [])
            admin.facebook.subscribe_app(APP_ID, receiver.url)
            dana = admin.facebook.user("Dana Demo")
            tokens = admin.facebook.mint_token(dana["id"], APP_ID, ["pages_manage_metadata", "leads_retrieval"])
            page_id, page_token = next(iter(tokens["page_tokens"].items()))
            Graph(url).ok("POST", f"/{page_id}/subscribed_apps", page_token, subscribed_fields="leadgen")

        with running_sandbox(seed=7, state_file=state_file) as url, SandboxAdmin(url) as admin:
            me = Graph(url).ok("GET", "/me", tokens["access_token"])
            form_id = admin.facebook.user("Dana Demo")["pages"][0]["forms"][0]["id"]
            admin.facebook.add_leads(form_id, flush=True)
            receiver.wait_for(lambda posts: len(posts) == 1)

    assert me["name"] == "Dana Demo"
