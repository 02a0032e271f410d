"""Cross-provider traffic control: the request log, seeded fault injection and sliding-window quotas."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import wire
from sandbox.wire import ConnectionFault

ADMIN_PREFIX = "/_sandbox/"
LOG_CAPACITY = 100_000
REDACTED = "REDACTED"
SECRET_PARAMS = frozenset(
    {
        "access_token",
        "oauth_token",
        "code",
        "refresh_token",
        "client_secret",
        "code_verifier",
        "token",
        "id_token",
        "pagetoken",
        "synctoken",
        "key",
        "request",
    }
)
FaultBody = Callable[[int], dict[str, Any]]


class FaultRule(BaseModel):
    path_prefix: str = Field(default="/", description="Requests whose path starts with this are candidates.")
    status: int | None = Field(
        default=None, ge=400, le=599, description="Answer with this status; None adds latency only (unless `body`)."
    )
    rate: float = Field(default=1.0, ge=0, le=1, description="Probability that a candidate request is hit.")
    retry_after: float | None = Field(default=None, ge=0, description="Seconds sent as Retry-After with the status.")
    latency_ms: float = Field(default=0, ge=0, le=60_000, description="Delay added before answering.")
    body: str | None = Field(
        default=None,
        max_length=1_000_000,
        description="Answer with this raw body (status `status`, else 200), as a broken proxy or a changed API would.",
    )
    connection: ConnectionFault | None = Field(
        default=None,
        description="Break the connection instead of answering: `reset` (TCP RST), `short_body` (a Content-Length "
        "longer than the body, then close) or `bad_status_line` (garbage where the status line belongs).",
    )
    times: int | None = Field(default=None, ge=0, description="Hit at most this many requests; None is unlimited.")
    skip: int = Field(default=0, ge=0, description="Let this many candidate requests through before the rule applies.")

    @property
    def answers(self) -> bool:
        return self.status is not None or self.body is not None or self.connection is not None


class FaultPlan(BaseModel):
    seed: int = 0
    rules: list[FaultRule] = Field(default_factory=list)


class QuotaConfig(BaseModel):
    per_app: int | None = Field(default=None, ge=0, description="Requests per window for one OAuth client.")
    per_user: int | None = Field(default=None, ge=0, description="Requests per window for one (client, account).")
    window_seconds: float = Field(default=60.0, gt=0)
    path_prefix: str = "/v1/people"


@dataclass(frozen=True)
class Fault:
    status: int | None
    retry_after: float | None
    latency: float
    body: str | None = None
    connection: ConnectionFault | None = None

    @property
    def answers(self) -> bool:
        """Whether the fault answers instead of the provider (a status, a body or a broken connection), not only
        delays it."""
        return self.status is not None or self.body is not None or self.connection is not None


class Faults:
    """Rules drawn from one seeded Random, so the same request sequence meets the same storm."""

    def __init__(self) -> None:
        self.configure(FaultPlan())

    def configure(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.remaining = [rule.times for rule in plan.rules]
        self.skipped = [0 for _ in plan.rules]

    def draw(self, path: str) -> Fault:
        latency, hit = 0.0, None
        for index, rule in enumerate(self.plan.rules):
            if not path.startswith(rule.path_prefix) or self.remaining[index] == 0:
                continue
            if self.skipped[index] < rule.skip:
                self.skipped[index] += 1
                continue
            if hit is not None and rule.answers:
                continue
            if self.rng.random() >= rule.rate:
                continue
            left = self.remaining[index]
            if left is not None:
                self.remaining[index] = left - 1
            latency += rule.latency_ms / 1000
            if rule.answers:
                hit = rule
        if hit is None:
            return Fault(None, None, latency)
        return Fault(hit.status, hit.retry_after, latency, hit.body, hit.connection)


@dataclass
class Quotas:
    """Sliding windows of admitted request times per app and per (app, user)."""

    config: QuotaConfig = field(default_factory=QuotaConfig)
    windows: dict[tuple[str, ...], deque[float]] = field(default_factory=dict)

    def configure(self, config: QuotaConfig) -> None:
        self.config = config
        self.windows.clear()

    def window(self, key: tuple[str, ...], now: float) -> deque[float]:
        times = self.windows.setdefault(key, deque())
        while times and times[0] <= now - self.config.window_seconds:
            times.popleft()
        return times

    def admit(self, path: str, app: str, user: str) -> str | None:
        """None if admitted (and counted); otherwise "app" or "user", the limit that refused it."""
        if not path.startswith(self.config.path_prefix):
            return None
        now = time.monotonic()
        limits = (("app", (app,), self.config.per_app), ("user", (app, user), self.config.per_user))
        windows = [(name, self.window(key, now), limit) for name, key, limit in limits if limit is not None]
        refused = next((name for name, times, limit in windows if len(times) >= limit), None)
        if refused is None:
            for _, times, _ in windows:
                times.append(now)
        return refused


def redact(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in pairs])


class RequestLog:
    def __init__(self) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=LOG_CAPACITY)
        self.next_id = 1

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append({"id": self.next_id, **entry})
        self.next_id += 1

    def since(self, after_id: int) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry["id"] > after_id]

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class Traffic:
    log: RequestLog = field(default_factory=RequestLog)
    faults: Faults = field(default_factory=Faults)
    quotas: Quotas = field(default_factory=Quotas)


def tag_request(request: Request, account: str | None = None, app: str | None = None) -> None:
    """Name the account and OAuth client a request acted for, for its log entry."""
    if account:
        request.state.sandbox_account = account
    if app:
        request.state.sandbox_app = app


class TrafficMiddleware:
    """Injects faults before the app sees a request, and logs every provider request (not the admin API)."""

    def __init__(
        self,
        app: ASGIApp,
        traffic: Callable[[], Traffic],
        fault_body: Callable[[str, int], dict[str, Any]],
        identify: Callable[[Request], None] = lambda request: None,
    ):
        self.app = app
        self.traffic = traffic
        self.fault_body = fault_body
        self.identify = identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        traffic, started, status = self.traffic(), time.time(), [500]
        tags: dict[str, Any] = scope.setdefault("state", {})

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        fault = traffic.faults.draw(scope["path"])
        try:
            if fault.latency:
                await asyncio.sleep(fault.latency)
            if not fault.answers:
                await self.app(scope, receive, recording_send)
                return
            self.identify(Request(scope))  # the app never sees a faulted request: name its caller for the log
            if fault.connection is not None:
                status[0] = 0  # no HTTP answer at all
                await broken(scope, receive, fault.connection)
            else:
                await self.fault_response(scope["path"], fault)(scope, receive, recording_send)
        finally:
            traffic.log.add(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": redact(scope.get("query_string", b"").decode("latin-1")),
                    "status": status[0],
                    "account": tags.get("sandbox_account"),
                    "app": tags.get("sandbox_app"),
                    "time": started,
                    "duration_ms": round((time.time() - started) * 1000, 3),
                    "fault": fault.answers,
                }
            )

    def fault_response(self, path: str, fault: Fault) -> Response:
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        if fault.body is not None:
            return Response(fault.body, fault.status or 200, headers, media_type="application/json; charset=UTF-8")
        status = fault.status or 500
        return JSONResponse(self.fault_body(path, status), status_code=status, headers=headers)


async def broken(scope: Scope, receive: Receive, fault: ConnectionFault) -> None:
    """Break the request's connection, then wait for the server to see it gone, so it sends nothing after."""
    wire.break_connection(scope.get("client"), fault)
    async with asyncio.timeout(5):
        while (await receive())["type"] != "http.disconnect":
            continue
