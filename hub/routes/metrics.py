"""`/metrics` in Prometheus' format, for whoever holds the metrics bearer token: this process's counters and the
scrape-time gauges."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from core import metrics as counters
from hub.deps import RedisDep, SessionsDep, SettingsDep
from hub.scrape import ScrapeTimeGauges

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, settings: SettingsDep, sessions: SessionsDep, redis: RedisDep) -> Response:
    expected = settings.metrics.token
    if expected is None:
        raise HTTPException(404)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
    counters.register()
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(ScrapeTimeGauges(sessions, redis))
    return Response(generate_latest(REGISTRY) + generate_latest(gauges), media_type=CONTENT_TYPE_LATEST)
