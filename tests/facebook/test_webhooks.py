"""Facebook's leadgen webhooks through a real hub on a Redis of its own, a real worker and the sandbox's signed
sender: batches land once with their answers, refused posts store nothing, unknown and deselected Pages are
ignored, a stopped Redis or a killed worker loses nothing, a dropped webhook lands through the poll, and
`synchub facebook subscribe-app` passes Meta's handshake."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import make_engine, session_factory
from hub.app import create_app
from sandbox.admin_client import SandboxAdmin
from sync.celery_app import make_celery
from tests.conftest import ROOT, LiveServer, Worker, clean_environ, free_port, settings_from_env, wait_for
from tests.facebook.conftest import CAPABILITY, GOOGLE_CLIENT, VERIFY_TOKEN, Facebook, FacebookHub, facebook_env, forms
from tests.resources.test_webhooks import OwnRedis
from webhooks.models import WebhookDelivery

SLUG = "facebook_leads"
WEBHOOK_ENV = {
    "SYNCHUB_WEBHOOKS__CLAIM_SECONDS": "2",
    "SYNCHUB_WEBHOOKS__GRACE_SECONDS": "1",
}
QUEUES = "webhooks,sync,maintenance"
CAP = 1024 * 1024  # the default body cap


@dataclass
class Inbox:
    hub: FacebookHub
    redis: OwnRedis
    worker: Worker
    browser: httpx.Client
    connection_id: uuid.UUID
    pages: list[dict[str, Any]]  # the user's Pages: the first two chosen, the third not

    @property
    def url(self) -> str:
        return f"{self.hub.url}/webhooks/{SLUG}"

    @property
    def form(self) -> str:
        return str(self.pages[0]["forms"][0]["id"])

    def sign(self, body: bytes, secret: str | None = None) -> str:
        key = (secret or self.hub.app_secret).encode()
        return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()

    def post(self, body: bytes, signature: str | None = "sign", **headers: str) -> httpx.Response:
        if signature == "sign":
            headers["x-hub-signature-256"] = self.sign(body)
        elif signature is not None:
            headers["x-hub-signature-256"] = signature
        return httpx.post(self.url, content=body, headers=headers, timeout=30)

    def deliveries(self, keys: list[str] | None = None) -> dict[str, WebhookDelivery]:
        query = select(WebhookDelivery).where(WebhookDelivery.connector == SLUG)
        if keys is not None:
            query = query.where(WebhookDelivery.dedupe_key.in_(keys))
        with self.hub.sessions() as session:
            return {row.dedupe_key: row for row in session.scalars(query)}

    def settled(self, keys: list[str], timeout: float = 60) -> dict[str, WebhookDelivery]:
        def done() -> dict[str, WebhookDelivery] | None:
            found = self.deliveries(keys)
            return found if len(found) == len(keys) and all(d.status != "pending" for d in found.values()) else None

        found: dict[str, WebhookDelivery] = wait_for(done, timeout=timeout, interval=0.05, what="the deliveries")
        return found

    def leads(self) -> list[dict[str, Any]]:
        return self.hub.leads(self.browser, connection_id=str(self.connection_id))

    def lead_ids(self) -> list[str]:
        """The connection's leadgen ids, with repeats (a doubled lead shows twice)."""
        return [lead["leadgen_id"] for lead in self.leads()]

    def landed(self, ids: list[str], timeout: float = 60) -> list[str]:
        """Wait until every one of `ids` is a lead; the connection's lead ids then."""

        def all_there() -> list[str] | None:
            found = self.lead_ids()
            return found if set(ids) <= set(found) else None

        found: list[str] = wait_for(all_there, timeout=timeout, interval=0.1, what="the leads to land")
        return found

    def idle(self) -> None:
        """Wait until no delivery is pending (a worker acking a task as Redis goes away exits: kombu 5)."""
        wait_for(
            lambda: all(d.status != "pending" for d in self.deliveries().values()),
            timeout=60,
            interval=0.1,
            what="the inbox to be idle",
        )

    def sweep(self) -> None:
        make_celery(self.hub.settings).send_task("synchub.webhooks.sweep")

    def sync_now(self) -> dict[str, Any]:
        answer = self.browser.post(f"{self.hub.url}/api/v1/connections/{self.connection_id}/sync")
        assert answer.status_code == 200, answer.text
        runs = [run for run in answer.json()["runs"].values() if run]
        assert runs, answer.json()
        return [self.hub.wait_run(run) for run in runs][-1]


def keys(page_id: str, lead_ids: list[str]) -> list[str]:
    return [f"{page_id}:{lead}" for lead in lead_ids]


def body_of(page_id: str, lead_ids: list[str], as_numbers: bool = False) -> bytes:
    def ident(value: str) -> str | int:
        return int(value) if as_numbers else value

    changes = [
        {"field": "leadgen", "value": {"leadgen_id": ident(lead), "page_id": ident(page_id), "created_time": 1}}
        for lead in lead_ids
    ]
    return json.dumps({"object": "page", "entry": [{"id": ident(page_id), "time": 1, "changes": changes}]}).encode()


@pytest.fixture(scope="module")
def inbox(
    hub_env: dict[str, str],
    sandbox_url: str,
    admin: SandboxAdmin,
    jwt_secret: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Inbox]:
    """A hub on its own Redis (this module stops it), its app's webhook pointed at the hub, a worker for every
    queue, and a connection that chose two of its user's three Pages (one form each)."""
    own = OwnRedis(tmp_path_factory.mktemp("facebook-webhook-redis")).start()
    port = free_port()
    app_id, app_secret = str(secrets.randbelow(10**15) + 10**15), secrets.token_urlsafe(24)
    admin.facebook.register_app(app_id, app_secret, [f"http://127.0.0.1:{port}/oauth/facebook/callback"])
    admin.facebook.subscribe_app(app_id, f"http://127.0.0.1:{port}/webhooks/{SLUG}", VERIFY_TOKEN)
    admin.register_client(GOOGLE_CLIENT, app_secret, [f"http://127.0.0.1:{port}/oauth/google/callback"])
    env = {
        **facebook_env(hub_env, sandbox_url, port, app_id, app_secret),
        "SYNCHUB_REDIS_URL": own.url,
        **WEBHOOK_ENV,
    }
    settings = settings_from_env(env)
    engine = make_engine(settings.database_url)
    with LiveServer(create_app(settings, engine), port=port) as server:
        worker = Worker(env, queues=QUEUES, concurrency=2).start()
        facebook = Facebook(admin)
        hub = FacebookHub(
            server.url, env, settings, admin, facebook, app_id, app_secret, engine, session_factory(engine), jwt_secret
        )
        state: Inbox | None = None
        try:
            fb_user = facebook.user(forms_per_page=1, leads=0, pages=3)
            browser = hub.browser(user="webhooks")
            connection_id = hub.connect(browser, fb_user["id"])
            for page in fb_user["pages"][:2]:
                assert hub.backfill(browser, connection_id, page["name"])["status"] == "succeeded"
            state = Inbox(hub, own, worker, browser, connection_id, fb_user["pages"])
            yield state
        finally:
            (state.worker if state else worker).stop(signal.SIGKILL)
            own.stop()
    engine.dispose()


@pytest.fixture(autouse=True)
def sandbox_as_meta(inbox: Inbox) -> Iterator[None]:
    yield
    inbox.hub.admin.facebook.settings(drop_webhooks=False, webhook_ids_as_numbers=False)
    inbox.hub.admin.clear_faults()


def test_a_signed_batch_of_50_lands_50_leads_with_their_answers_and_the_same_batch_again_lands_none(
    inbox: Inbox,
) -> None:
    sent = inbox.hub.admin.facebook.add_leads(inbox.form, 50, flush=True)
    lead_ids, (delivery,) = sent["leads"], sent["deliveries"]
    posted = json.loads(inbox.hub.admin.facebook.deliveries(after=delivery - 1)[0]["body"])
    assert len(posted["entry"][0]["changes"]) == 50
    page = inbox.pages[0]["id"]

    done = inbox.settled(keys(page, lead_ids))
    assert {d.status for d in done.values()} == {"processed"}
    stored = {lead["leadgen_id"]: lead for lead in inbox.leads() if lead["leadgen_id"] in lead_ids}
    assert len(stored) == 50
    for lead_id in lead_ids[:5]:
        truth = inbox.hub.admin.facebook.lead(lead_id)
        asked = {answer["name"]: answer["values"] for answer in truth["field_data"]}
        lead = stored[lead_id]
        assert lead["form_id"] == inbox.form and lead["page_id"] == page
        assert lead["email"] == ((asked.get("email") or [None])[0] or None)
        kept = {answer["key"]: list(answer["values"]) for answer in lead["answers"]}
        assert kept == {k: [str(v) for v in vs] for k, vs in asked.items() if k not in STANDARD_KEYS}

    inbox.hub.admin.facebook.resend(delivery)
    wait_for(
        lambda: inbox.hub.admin.facebook.deliveries(after=delivery)[-1]["state"] == "delivered",
        timeout=60,
        what="the redelivery to be answered",
    )
    assert inbox.lead_ids().count(lead_ids[0]) == 1 and len(set(lead_ids) & set(inbox.lead_ids())) == 50
    assert sum(inbox.lead_ids().count(i) for i in lead_ids) == 50
    assert len(inbox.deliveries(keys(page, lead_ids))) == 50

    inbox.hub.admin.facebook.settings(webhook_ids_as_numbers=True)
    numbered = inbox.hub.admin.facebook.add_leads(inbox.form, 2, flush=True)["leads"]
    assert {d.status for d in inbox.settled(keys(page, numbered)).values()} == {"processed"}
    assert set(numbered) <= set(inbox.lead_ids())


STANDARD_KEYS = {"email", "phone_number", "full_name", "first_name", "last_name"}


def test_refused_posts_store_nothing_and_what_no_connection_chose_is_ignored(inbox: Inbox) -> None:
    page = inbox.pages[0]["id"]
    lead_ids = inbox.hub.admin.facebook.add_leads(inbox.form, 2, webhook=False)["leads"]
    body = body_of(page, lead_ids)
    before = len(inbox.deliveries())

    assert inbox.post(body, signature=inbox.sign(body, "not-the-app-secret")).status_code == 403
    assert inbox.post(body, signature=None).status_code == 403
    assert inbox.post(body, signature=inbox.sign(body).upper()).status_code == 403
    assert inbox.post(body.replace(b"leadgen", b"leadgeN", 1), signature=inbox.sign(body)).status_code == 403
    for malformed in (b"{not json", b'{"object": "page", "entry": {}}', body_of(page, ["12x"]), b"[]"):
        assert inbox.post(malformed).status_code == 400, malformed
    oversized = json.dumps({"object": "page", "entry": [], "pad": "x" * CAP}).encode()
    assert inbox.post(oversized).status_code == 413
    assert len(inbox.deliveries()) == before and inbox.deliveries(keys(page, lead_ids)) == {}

    unchosen = inbox.pages[2]["id"]
    stranger_id = "9" + str(secrets.randbelow(10**12))
    stranger = body_of(unchosen, [stranger_id])
    other_field = json.dumps(
        {"object": "page", "entry": [{"id": page, "time": 1, "changes": [{"field": "feed", "value": {"x": 1}}]}]}
    ).encode()
    other_object = json.dumps({"object": "user", "entry": [{"id": "1", "changed_fields": ["email"]}]}).encode()
    for ignorable in (stranger, other_field, other_object):
        answer = inbox.post(ignorable)
        assert answer.status_code == 200 and answer.json() == {"received": 1, "new": 1}, answer.text
    assert len(inbox.deliveries()) == before + 3
    ignored = inbox.settled(keys(unchosen, [stranger_id]))[f"{unchosen}:{stranger_id}"]
    assert (ignored.status, ignored.routed) == ("ignored", 0)
    assert [d.status for d in inbox.deliveries().values()].count("ignored") >= 3

    largest = body_of(page, [str(10**15 + n) for n in range(1000)])  # Meta's largest batch, ids as strings
    assert len(largest) < CAP / 2
    filler = b'{"object": "page", "entry": [], "pad": "' + b"x" * CAP
    just_under = filler[: CAP - 2] + b'"}'
    assert len(just_under) == CAP and inbox.post(just_under).json() == {"received": 0, "new": 0}
    assert inbox.post(body_of(page, lead_ids, as_numbers=True)).json() == {"received": 2, "new": 2}
    assert inbox.post(body_of(page, lead_ids)).json() == {"received": 2, "new": 0}
    assert inbox.landed(lead_ids).count(lead_ids[0]) == 1


def test_a_lead_graph_cannot_load_fails_alone_and_the_rest_of_its_batch_lands(inbox: Inbox) -> None:
    """Graph refuses a whole `?ids=` read for one id it cannot load: the worker then reads each alone."""
    page = inbox.pages[0]["id"]
    real = inbox.hub.admin.facebook.add_leads(inbox.form, 2, webhook=False)["leads"]
    unknown = str(10**15 + secrets.randbelow(10**12))
    assert inbox.post(body_of(page, [real[0], unknown, real[1]])).status_code == 200
    found = inbox.settled(keys(page, [*real, unknown]))
    statuses = {key.split(":")[1]: d.status for key, d in found.items()}
    assert statuses == {real[0]: "processed", unknown: "failed", real[1]: "processed"}
    assert "code 100" in (found[f"{page}:{unknown}"].error or "")
    assert [inbox.landed(real).count(lead) for lead in real] == [1, 1]


def test_the_handshake_echoes_the_challenge_for_the_right_token_only(inbox: Inbox) -> None:
    good = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY_TOKEN}
    answer = httpx.get(inbox.url, params=good)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    for wrong in (
        {**good, "hub.verify_token": "meatyhamhock-meatyhamhock"},
        {**good, "hub.verify_token": VERIFY_TOKEN[:-1]},
        {k: v for k, v in good.items() if k != "hub.verify_token"},
        {**good, "hub.mode": "unsubscribe"},
    ):
        assert httpx.get(inbox.url, params=wrong).status_code == 403, wrong


def test_subscribe_app_registers_the_callback_and_passes_metas_handshake(inbox: Inbox) -> None:
    inbox.hub.admin.facebook.subscribe_app(inbox.hub.app_id, "http://127.0.0.1:9/nowhere", "x")
    done = subprocess.run(
        [sys.executable, "-m", "hub", "facebook", "subscribe-app"],
        env=clean_environ(inbox.hub.env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    app = next(a for a in inbox.hub.admin.facebook.apps() if a["app_id"] == inbox.hub.app_id)
    assert app["subscription"]["callback_url"] == inbox.url
    assert app["subscription"]["fields"] == ["leadgen"]
    assert app["subscription"]["verify_token"] == VERIFY_TOKEN
    assert inbox.url in done.stdout

    lead_ids = inbox.hub.admin.facebook.add_leads(inbox.form, 1, flush=True)["leads"]
    assert inbox.landed(lead_ids).count(lead_ids[0]) == 1


def test_with_redis_stopped_webhooks_are_stored_and_the_sweeper_lands_every_lead(inbox: Inbox) -> None:
    page = inbox.pages[0]["id"]
    inbox.idle()
    inbox.redis.stop()
    try:
        sent = inbox.hub.admin.facebook.add_leads(inbox.form, 10, flush=True)
        lead_ids = sent["leads"]
        wait_for(
            lambda: bool(inbox.hub.admin.facebook.deliveries(after=sent["deliveries"][0] - 1)[0]["attempts"]),
            timeout=60,
            what="the sandbox to post the webhook",
        )
        stored = wait_for(lambda: len(inbox.deliveries(keys(page, lead_ids))) == 10, timeout=60, what="receipt")
        assert stored
    finally:
        inbox.redis.start()
    if inbox.worker.process is not None and inbox.worker.process.poll() is not None:
        # A Celery worker whose broker vanished while it acked a task exits (kombu 5's Redis transport); a
        # deployment's supervisor starts it again, as this does. What is checked is that no lead is lost.
        inbox.worker = Worker(inbox.hub.env, queues=QUEUES, concurrency=2).start()

    def swept() -> bool:
        inbox.sweep()
        found = inbox.deliveries(keys(page, lead_ids))
        return all(d.status == "processed" for d in found.values())

    wait_for(swept, timeout=60, interval=1.0, what="the sweeper to land the deliveries")
    found = inbox.lead_ids()
    assert [found.count(i) for i in lead_ids] == [1] * 10


def test_a_worker_killed_mid_batch_lands_every_lead_once(inbox: Inbox) -> None:
    """One POST of 10 leads on each of two chosen Pages: the worker claims all 20 and writes them a Page at a
    time (one Graph request and one commit each), and is killed after the first Page's commit, while it fetches
    the second's."""
    first, second = inbox.pages[0], inbox.pages[1]
    leads = {
        page["id"]: inbox.hub.admin.facebook.add_leads(str(page["forms"][0]["id"]), 10, webhook=False)["leads"]
        for page in (first, second)
    }
    entries = [json.loads(body_of(page, ids))["entry"][0] for page, ids in leads.items()]
    inbox.idle()
    inbox.hub.admin.set_faults([{"path_prefix": "/", "latency_ms": 1500}])  # every Graph call
    try:
        assert inbox.post(json.dumps({"object": "page", "entry": entries}).encode()).status_code == 200
        wait_for(lambda: set(leads[first["id"]]) <= set(inbox.lead_ids()), timeout=60, what="the first Page's leads")
        inbox.worker.stop(signal.SIGKILL)
    finally:
        inbox.hub.admin.clear_faults()
    all_keys = [key for page, ids in leads.items() for key in keys(page, ids)]
    assert {d.status for d in inbox.deliveries(keys(second["id"], leads[second["id"]])).values()} == {"pending"}

    inbox.worker = Worker(inbox.hub.env, queues=QUEUES, concurrency=2).start()

    def swept() -> bool:
        inbox.sweep()
        return all(d.status != "pending" for d in inbox.deliveries(all_keys).values())

    wait_for(swept, timeout=60, interval=1.0, what="the sweeper to hand the batch to the new worker")
    assert {d.status for d in inbox.deliveries(all_keys).values()} == {"processed"}
    found = inbox.lead_ids()
    assert [found.count(i) for ids in leads.values() for i in ids] == [1] * 20


def test_a_webhook_meta_drops_lands_through_the_poll(inbox: Inbox) -> None:
    inbox.hub.admin.facebook.settings(drop_webhooks=True)
    sent = inbox.hub.admin.facebook.add_leads(inbox.form, 1, flush=True)
    (lead_id,) = sent["leads"]
    assert inbox.hub.admin.facebook.deliveries(after=sent["deliveries"][0] - 1)[0]["state"] == "dropped"
    assert inbox.deliveries(keys(inbox.pages[0]["id"], [lead_id])) == {}

    assert inbox.sync_now()["status"] == "succeeded"
    assert inbox.lead_ids().count(lead_id) == 1


def test_a_lead_on_a_form_created_after_the_page_was_chosen_lands_through_webhook_and_poll_once(
    inbox: Inbox,
) -> None:
    page = inbox.pages[0]["id"]
    form = inbox.hub.facebook.call("POST", f"/pages/{page}/forms", json={"name": f"Late {uuid.uuid4().hex[:4]}"})
    (lead_id,) = inbox.hub.admin.facebook.add_leads(form["id"], 1, flush=True)["leads"]

    assert inbox.settled(keys(page, [lead_id]))[f"{page}:{lead_id}"].status == "processed"
    assert inbox.landed([lead_id]).count(lead_id) == 1
    mark = inbox.hub.mark()
    assert inbox.sync_now()["status"] == "succeeded"
    assert any(call["path"].endswith(f"{form['id']}/leads") for call in inbox.hub.graph_calls(mark))
    assert inbox.lead_ids().count(lead_id) == 1


def test_a_deselected_pages_later_webhooks_are_ignored(inbox: Inbox) -> None:
    page = inbox.pages[1]
    form = str(page["forms"][0]["id"])
    (before,) = inbox.hub.admin.facebook.add_leads(form, 1, flush=True)["leads"]
    inbox.landed([before])

    inbox.hub.choose(inbox.browser, inbox.connection_id, page["name"], selected=False)
    (late,) = inbox.hub.admin.facebook.add_leads(form, 1, webhook=False)["leads"]
    assert inbox.post(body_of(page["id"], [late])).json() == {"received": 1, "new": 1}

    done = inbox.settled(keys(page["id"], [late]))
    assert (done[f"{page['id']}:{late}"].status, done[f"{page['id']}:{late}"].routed) == ("ignored", 0)
    assert late not in inbox.lead_ids()


def test_forms_chosen_within_a_page_take_their_leads_and_the_unchosen_forms_leads_are_ignored(inbox: Inbox) -> None:
    """The chooser page lists a chosen Page's forms, a checkbox each; with one unticked, that form's leads are
    recorded as ignored in the inbox (which `synchub webhooks list --status ignored` shows), whether the webhook
    names the form or not, and the poll does not read it, while the ticked form's leads land."""
    page = inbox.pages[0]
    browser = inbox.hub.browser(user="webhooks")  # signed in afresh: this module stops Redis, where sessions live
    kept = str(page["forms"][0]["id"])
    other = inbox.hub.admin.facebook.add_form(page["id"], "Unchosen form")
    resources = inbox.hub.pages(browser, inbox.connection_id)
    chosen = [r["id"] for r in resources.values() if r["selected"]]
    resource = resources[page["name"]]["id"]
    link = f"/connections/{inbox.connection_id}/capabilities/{CAPABILITY}/resources"
    chooser = browser.get(inbox.hub.url + link)
    assert chooser.status_code == 200, chooser.text
    (form,) = forms(chooser)
    assert {kept, other} <= set(form.boxes(f"part:{resource}")), chooser.text  # and any other test's form
    assert "Unchosen form</label>" in chooser.text
    data = {
        "csrf_token": form.hidden()["csrf_token"],
        "resource": chosen,
        "parts_of": [resource],
        f"part:{resource}": [kept],
    }
    try:
        saved = browser.post(inbox.hub.url + form.action, data=data)
        assert saved.status_code == 303, saved.text
        assert inbox.hub.pages(browser, inbox.connection_id)[page["name"]]["parts"] == [kept]
        again = browser.get(inbox.hub.url + link).text
        assert f'name="part:{resource}" value="{kept}" checked>' in again
        assert f'name="part:{resource}" value="{other}">' in again

        wanted = inbox.hub.admin.facebook.add_leads(kept, 1, flush=True)["leads"]
        unwanted = inbox.hub.admin.facebook.add_leads(other, 1, flush=True)["leads"]  # the webhook names its form
        unnamed = inbox.hub.admin.facebook.add_leads(other, 1, webhook=False)["leads"]
        assert inbox.post(body_of(page["id"], unnamed)).status_code == 200  # no form_id: known once fetched
        found = inbox.settled(keys(page["id"], wanted + unwanted + unnamed))
        statuses = {key.split(":")[1]: d.status for key, d in found.items()}
        assert statuses == {wanted[0]: "processed", unwanted[0]: "ignored", unnamed[0]: "ignored"}
        landed = inbox.landed(wanted)
        assert not set(unwanted + unnamed) & set(landed)

        mark = inbox.hub.mark()
        inbox.sync_now()
        read = [c["path"] for c in inbox.hub.graph_calls(mark) if c["path"].endswith("/leads")]
        assert f"/{kept}/leads" in read and f"/{other}/leads" not in read, read
        assert not set(unwanted + unnamed) & set(inbox.lead_ids())
    finally:
        url = inbox.hub.resources_url(inbox.connection_id, resource) + "/parts"
        assert browser.put(url, json={"parts": None}).status_code == 200
