"""`/webhooks/{slug}`: the provider's handshake, and POSTs verified on their raw bytes, split, stored durably and
handed to the workers in one task, answered before any call to the provider."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import psycopg
from celery import Celery
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from connectors.base import ChannelWebhook, ConnectorSpec, Webhook, WebhookConnectorSettings, WebhookKeys
from connectors.registry import enabled, settings_of
from core.db import transaction
from core.logsafe import safe_exception
from core.settings import ConfigError, Settings
from sync import channels
from webhooks import inbox, intake
from webhooks.enqueue import Enqueuer
from webhooks.inbox import Stored
from webhooks.models import DEDUPE_KEY_LENGTH
from webhooks.processing import send

log = logging.getLogger(__name__)

PREFIX = "/webhooks"
RETRY_AFTER_SECONDS = "5"


@dataclass(frozen=True)
class Endpoint:
    """A connector's receiver: its webhook, the keys it checks requests with, and its body cap in bytes."""

    spec: ConnectorSpec
    webhook: Webhook
    keys: WebhookKeys
    max_body_bytes: int

    @property
    def path(self) -> str:
        return f"{PREFIX}/{self.spec.slug}"


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


class Receiver:
    def __init__(
        self, endpoints: Mapping[str, Endpoint], sessions: sessionmaker[Session], pool: intake.Pool, celery: Celery
    ) -> None:
        self.endpoints, self.sessions, self.celery = endpoints, sessions, celery
        self.pool, self.enqueuer = pool, Enqueuer(celery)

    async def handshake(self, slug: str, request: Request) -> Response:
        endpoint = self.endpoints.get(slug)
        if endpoint is None:
            return _refused(404, "no webhook is served here")
        try:
            challenge = endpoint.webhook.handshake(dict(request.query_params), endpoint.keys)
        except Exception:
            challenge = None
        if challenge is None:
            return _refused(403, "the verify token does not match")
        return PlainTextResponse(challenge)

    async def receive(self, slug: str, request: Request) -> Response:
        endpoint = self.endpoints.get(slug)
        if endpoint is None:
            return _refused(404, "no webhook is served here")
        if isinstance(endpoint.webhook, ChannelWebhook):
            return await self._notified(slug, endpoint.webhook, request)
        body = await request.body()
        if not self._verified(endpoint, request, body):
            log.warning("webhook signature refused", extra={"connector": slug, "status": 403})
            return _refused(403, "the signature does not verify")
        try:
            deliveries = endpoint.webhook.split(body)
        except Exception:
            return _refused(400, "the body is not a delivery this connector understands")
        if any(len(d.dedupe_key) > DEDUPE_KEY_LENGTH for d in deliveries):
            return _refused(400, "a change's id is longer than the hub keeps")
        try:
            stored = await intake.store(self.pool, slug, deliveries)
        except (psycopg.DataError, UnicodeError):
            # a value PostgreSQL refuses (a NUL character in JSON) or text UTF-8 cannot hold: resending cannot help
            return _refused(400, "the body holds a value the hub cannot store")
        except (psycopg.Error, OSError) as exc:
            log.error("could not store a webhook: %s", safe_exception(exc), extra={"connector": slug})
            return JSONResponse(
                {"detail": "the hub could not store the delivery; send it again"},
                status_code=503,
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        if stored.pending:
            await self.enqueuer.send(stored.pending)
        if log.isEnabledFor(logging.INFO):
            log.info("webhook stored", extra={"connector": slug, "count": stored.received, "new": stored.new})
        return JSONResponse({"received": stored.received, "new": stored.new})

    async def _notified(self, slug: str, webhook: ChannelWebhook, request: Request) -> Response:
        """A push channel's notification (its body says nothing): the channel it names must be live and its token
        the one kept, else it is refused; a channel unknown or stopped is answered 200 and recorded as ignored."""
        try:
            channel_id, token = webhook.channel(request.headers)
            webhook.notification(request.headers, "")
        except Exception:
            return _refused(400, "the notification does not name a channel this hub understands")
        try:
            stored = await run_in_threadpool(
                self._store_notification, slug, webhook, request.headers, channel_id, token
            )
        except SQLAlchemyError as exc:
            log.error("could not store a notification: %s", safe_exception(exc), extra={"connector": slug})
            return JSONResponse(
                {"detail": "the hub could not store the notification; send it again"},
                status_code=503,
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        if stored is None:
            log.warning("notification token refused", extra={"connector": slug, "status": 403})
            return _refused(403, "the channel token does not match")
        return JSONResponse({"received": stored.received, "new": stored.new})

    def _store_notification(
        self, slug: str, webhook: ChannelWebhook, headers: Mapping[str, str], channel_id: str, token: str
    ) -> Stored | None:
        with transaction(self.sessions) as session:
            found = channels.check(session, channel_id, token)
            if found.outcome == channels.Check.FORGED:
                return None
            delivery = webhook.notification(headers, found.route_key)
            if found.outcome == channels.Check.UNKNOWN:
                delivery = replace(delivery, ignored=True)
            stored = inbox.store(session, slug, [delivery])
        if stored.pending:
            send(self.celery, stored.pending)
        log.info("notification stored", extra={"connector": slug, "count": stored.received, "new": stored.new})
        return stored

    @staticmethod
    def _verified(endpoint: Endpoint, request: Request, body: bytes) -> bool:
        """A signature that does not verify, or headers the connector cannot even read, are refused alike."""
        try:
            return endpoint.webhook.verify(request.headers, body, endpoint.keys)
        except Exception:
            return False

    def router(self) -> APIRouter:
        router = APIRouter(prefix=PREFIX, tags=["webhooks"])
        router.add_api_route("/{slug}", self.handshake, methods=["GET"], include_in_schema=False)
        router.add_api_route("/{slug}", self.receive, methods=["POST"], include_in_schema=False)
        return router


def endpoints(settings: Settings, client_secret: Callable[[str], str | None]) -> dict[str, Endpoint]:
    """The receivers of the enabled connectors that declare a webhook, by slug; `client_secret` gives an auth
    provider's OAuth client secret (None when it has none configured)."""
    found: dict[str, Endpoint] = {}
    for spec in enabled(settings):
        if spec.webhook is None:
            continue
        own = settings_of(settings, spec)
        if not isinstance(own, WebhookConnectorSettings):
            raise ConfigError(f"the connector {spec.slug} declares a webhook but its settings do not say how")
        keys = WebhookKeys(client_secret(spec.auth_provider) or "", own.verify_token.get_secret_value())
        found[spec.slug] = Endpoint(spec, spec.webhook, keys, own.webhook_max_body_bytes)
    return found


def install(app: FastAPI, found: Mapping[str, Endpoint], sessions: sessionmaker[Session], celery: Celery) -> None:
    """Serve `/webhooks/{slug}` for these endpoints, each under its connector's body cap (`app.state.body_caps`)."""
    for endpoint in found.values():
        app.state.body_caps.route(endpoint.path, endpoint.max_body_bytes)
    bind = sessions.kw["bind"]
    pool = intake.Pool(intake.conninfo(bind.url.render_as_string(hide_password=False)))
    before = len(app.router.routes)
    app.include_router(Receiver(found, sessions, pool, celery).router())
    # First in the routing table: a provider's POSTs then skip matching every API and page route before theirs.
    # `/webhooks/{slug}` overlaps no other route, so the order changes nothing else.
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[:0] = added
