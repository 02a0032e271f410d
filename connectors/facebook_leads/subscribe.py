"""`synchub facebook subscribe-app`: the app-level webhook subscription (providers.md 4.5), made with the app access
token. Meta answers it only after a GET handshake to the callback URL, so the hub must be reachable over public
HTTPS at `$SYNCHUB_PUBLIC_URL/webhooks/facebook_leads` when it runs."""

from __future__ import annotations

import hashlib
import hmac

import httpx

from connectors.base import Command, OperatorContext
from connectors.facebook_leads.graph import GRAPH_VERSION
from core.errors import ConnectorError

DEFAULT_GRAPH = "https://graph.facebook.com"
WEBHOOK_PATH = "/webhooks/facebook_leads"


def callback_url(public_url: str) -> str:
    return public_url.rstrip("/") + WEBHOOK_PATH


def subscribe_app(ctx: OperatorContext) -> str:
    """`POST /{app-id}/subscriptions` with object=page, fields=leadgen, the callback URL and the verify token."""
    verify_token = getattr(ctx.settings, "verify_token", None)
    if verify_token is None:
        raise ConnectorError("SYNCHUB_FACEBOOK_LEADS__VERIFY_TOKEN is not set")
    app_token = f"{ctx.client_id}|{ctx.client_secret}"
    url = callback_url(ctx.public_url)
    params = {
        "object": "page",
        "callback_url": url,
        "fields": "leadgen",
        "verify_token": verify_token.get_secret_value(),
        "include_values": "true",
        "access_token": app_token,
        "appsecret_proof": hmac.new(ctx.client_secret.encode(), app_token.encode(), hashlib.sha256).hexdigest(),
    }
    endpoint = f"{(ctx.base_url or DEFAULT_GRAPH).rstrip('/')}/{GRAPH_VERSION}/{ctx.client_id}/subscriptions"
    try:
        answer = httpx.post(endpoint, data=params, timeout=max(ctx.timeout, 10.0))
    except httpx.HTTPError as exc:
        raise ConnectorError(f"could not reach Facebook ({type(exc).__name__})") from exc
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200 or not isinstance(body, dict) or body.get("success") not in (True, "true"):
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else f"HTTP {answer.status_code}"
        raise ConnectorError(f"Facebook refused the subscription: {message}")
    return f"the app {ctx.client_id} now sends leadgen webhooks for its Pages to {url}"


COMMANDS = (
    Command(
        "subscribe-app",
        "Register the hub's webhook (callback URL, verify token, field leadgen) with the Facebook app.",
        subscribe_app,
    ),
)
