"""Meta's webhook sender: leadgen changes batched per app, signed with X-Hub-Signature-256 over the raw body,
redelivered with backoff until answered 200 or the retry window ends; and the subscription handshake."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.facebook.state import Delivery, Lead

if TYPE_CHECKING:
    from sandbox.facebook.state import FacebookState

Change = tuple[str, dict[str, Any]]


def signature(secret: str, body: bytes, digest: str = "sha256") -> str:
    return f"{digest}=" + hmac.new(secret.encode(), body, getattr(hashlib, digest)).hexdigest()


def change_value(lead: Lead, as_numbers: bool) -> dict[str, Any]:
    def ident(value: str) -> str | int:
        return int(value) if as_numbers else value

    value: dict[str, Any] = {"leadgen_id": ident(lead.id), "page_id": ident(lead.page_id)}
    value["form_id"] = ident(lead.form_id)
    if lead.ad_id:
        value.update(adgroup_id=ident(lead.adgroup_id or lead.ad_id), ad_id=ident(lead.ad_id))
    value["created_time"] = int(lead.created_time)
    return value


def batch_body(changes: list[Change], as_numbers: bool, now: float) -> dict[str, Any]:
    """One `entry` per Page, in order of first appearance, each with its `leadgen` changes."""
    entries: dict[str, dict[str, Any]] = {}
    for page_id, value in changes:
        entry = entries.setdefault(
            page_id, {"id": int(page_id) if as_numbers else page_id, "time": int(now), "changes": []}
        )
        entry["changes"].append({"field": "leadgen", "value": value})
    return {"object": "page", "entry": list(entries.values())}


async def verify_callback(url: str, verify_token: str, timeout: float) -> str | None:
    """The handshake Meta makes when a subscription is saved; None when the callback echoed the challenge."""
    challenge = str(secrets.randbelow(2**31 - 1) + 1)
    params = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            answer = await client.get(url, params=params)
    except httpx.HTTPError as error:
        return f"couldn't connect to the callback URL ({type(error).__name__})"
    if answer.status_code != 200:
        return f"the callback URL answered HTTP {answer.status_code}"
    if answer.text.strip() != challenge:
        return "the callback URL did not echo hub.challenge"
    return None


class WebhookSender:
    """Lives beside the state it reads (never pickled): pending changes, batch timers and delivery tasks."""

    def __init__(self, facebook: FacebookState) -> None:
        self.facebook = facebook
        self.pending: dict[str, list[Change]] = {}
        self.timers: dict[str, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def subscribers(self, lead: Lead) -> list[str]:
        """Apps subscribed to `page`/`leadgen` whose app the lead's Page installed for `leadgen`."""
        page = self.facebook.pages[lead.page_id]
        return [
            app.app_id
            for app in self.facebook.apps.values()
            if app.subscription is not None
            and app.subscription.active
            and app.subscription.object == "page"
            and "leadgen" in app.subscription.fields
            and "leadgen" in page.subscribed.get(app.app_id, [])
        ]

    def lead_created(self, lead: Lead) -> list[str]:
        apps = self.subscribers(lead)
        for app_id in apps:
            value = change_value(lead, self.facebook.settings.webhook_ids_as_numbers)
            self.pending.setdefault(app_id, []).append((lead.page_id, value))
            if app_id not in self.timers:
                self.timers[app_id] = self.spawn(self.flush_later(app_id))
        return apps

    async def flush_later(self, app_id: str) -> None:
        await asyncio.sleep(self.facebook.settings.webhook_batch_window)
        self.timers.pop(app_id, None)
        self.flush(app_id)

    def flush(self, app_id: str) -> list[Delivery]:
        changes = self.pending.pop(app_id, [])
        size = self.facebook.settings.webhook_max_batch
        return [self.send(app_id, changes[i : i + size]) for i in range(0, len(changes), size)]

    def flush_all(self) -> list[Delivery]:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        return [delivery for app_id in list(self.pending) for delivery in self.flush(app_id)]

    def send(self, app_id: str, changes: list[Change]) -> Delivery:
        app = self.facebook.apps[app_id]
        assert app.subscription is not None
        settings = self.facebook.settings
        body = json.dumps(batch_body(changes, settings.webhook_ids_as_numbers, time.time()), separators=(",", ":"))
        ids = [str(value["leadgen_id"]) for _, value in changes]
        return self.record_and_deliver(app_id, app.subscription.callback_url, body, ids)

    def record_and_deliver(self, app_id: str, url: str, body: str, ids: list[str]) -> Delivery:
        deliveries = self.facebook.deliveries
        delivery = Delivery(max(deliveries, default=0) + 1, app_id, url, body, ids, time.time())
        deliveries[delivery.id] = delivery
        if self.facebook.settings.drop_webhooks:
            delivery.state = "dropped"
        else:
            self.spawn(self.deliver(delivery))
        return delivery

    def resend(self, delivery: Delivery) -> Delivery:
        """The same body again, as a new delivery: what Meta's redelivery of a change looks like to the hub."""
        return self.record_and_deliver(delivery.app_id, delivery.url, delivery.body, delivery.leadgen_ids)

    async def deliver(self, delivery: Delivery) -> None:
        settings, app = self.facebook.settings, self.facebook.apps[delivery.app_id]
        raw = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
            "X-Hub-Signature-256": signature(app.secret, raw),
        }
        if settings.legacy_sha1_signature:
            headers["X-Hub-Signature"] = signature(app.secret, raw, "sha1")
        async with httpx.AsyncClient(timeout=settings.webhook_timeout) as client:
            while True:
                attempt: dict[str, Any] = {"time": time.time(), "status": None, "error": None}
                delivery.attempts.append(attempt)
                try:
                    answer = await client.post(delivery.url, content=raw, headers=headers)
                    attempt["status"] = answer.status_code
                except httpx.HTTPError as error:
                    attempt["error"] = type(error).__name__
                if attempt["status"] == 200:
                    delivery.state, delivery.next_attempt_at = "delivered", None
                    return
                delay = settings.webhook_retry_first_delay * 2 ** (len(delivery.attempts) - 1)
                if time.time() + delay - delivery.created > settings.webhook_retry_window:
                    delivery.state, delivery.next_attempt_at = "failed", None
                    return
                delivery.state, delivery.next_attempt_at = "retrying", time.time() + delay
                await asyncio.sleep(delay)

    def close(self) -> None:
        for task in [*self.tasks, *self.timers.values()]:
            task.cancel()
        self.pending.clear()
        self.timers.clear()
