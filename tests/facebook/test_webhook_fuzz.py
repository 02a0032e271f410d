"""10,000 seeded requests to the real receiver in its own API process, mutated from valid leadgen deliveries: bodies,
headers, signatures, encodings, nesting and ids. None gets a 5xx; nothing is stored from a request whose signature
does not verify; every change of every validly signed, well-formed delivery is stored exactly once."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import redis
from sqlalchemy import delete, func, select

from core.db import make_engine, session_factory
from tests import rawhttp
from tests.conftest import ROOT, clean_environ, settings_from_env, wait_for
from tests.facebook.conftest import facebook_env
from tests.servers import free_port, kill_group, spawn
from webhooks.models import WebhookDelivery
from webhooks.processing import QUEUE

SEED = 20261202
REQUESTS = 10_000
CONCURRENCY = 8
CAP = 64 * 1024  # a smaller cap than the default, so oversized bodies stay cheap
SLUG = "facebook_leads"


@dataclass
class Case:
    body: bytes
    headers: dict[str, str]
    kind: str  # "valid" (stored: its keys), "forged" (403), "signed" (a signed mutation: 200, 400 or 413)
    keys: list[str] = field(default_factory=list)


class Generator:
    """Valid deliveries as Meta sends them (ids as strings or numbers, batches of one to five Pages), and
    mutations of them. Each kind uses Page ids of its own, so what is stored can be told apart."""

    def __init__(self, seed: int, secret: str) -> None:
        self.random, self.secret = random.Random(seed), secret.encode()
        run = secrets.randbelow(10**6)
        self.prefix = {"valid": f"71{run:06d}", "forged": f"72{run:06d}", "signed": f"73{run:06d}"}
        self.serial = 0
        self.sent: list[Case] = []

    def sign(self, body: bytes, secret: bytes | None = None) -> str:
        return "sha256=" + hmac.new(secret or self.secret, body, hashlib.sha256).hexdigest()

    def ident(self, space: str) -> str:
        self.serial += 1
        return f"{self.prefix[space]}{self.serial:08d}"

    def delivery(self, space: str) -> tuple[dict[str, object], list[str]]:
        numbers = self.random.random() < 0.3
        entries, keys = [], []
        for _ in range(self.random.randint(1, 3)):
            page = self.ident(space)
            changes = []
            for _ in range(self.random.randint(1, 5)):
                lead = self.ident(space)
                value: dict[str, object] = {"leadgen_id": lead, "page_id": page, "form_id": self.ident(space)}
                value["created_time"] = self.random.randint(1_600_000_000, 1_800_000_000)
                if numbers:
                    value = {k: int(v) if isinstance(v, str) else v for k, v in value.items()}
                changes.append({"field": "leadgen", "value": value})
                keys.append(f"{page}:{lead}")
            entries.append({"id": int(page) if numbers else page, "time": 1_700_000_000, "changes": changes})
        return {"object": "page", "entry": entries}, keys

    def encode(self, data: object) -> bytes:
        style = self.random.randrange(4)
        if style == 0:
            return json.dumps(data).encode()
        if style == 1:
            return json.dumps(data, separators=(",", ":")).encode()
        if style == 2:
            return json.dumps(data, indent=self.random.randint(1, 4), sort_keys=True).encode()
        return json.dumps(data, ensure_ascii=True).encode("utf-16" if self.random.random() < 0.5 else "utf-8")

    def headers(self, signature: str | None) -> dict[str, str]:
        headers = {"content-type": self.random.choice(["application/json", "text/plain", "application/x-www-form"])}
        if signature is not None:
            headers[self.random.choice(["X-Hub-Signature-256", "x-hub-signature-256"])] = signature
        return headers

    def valid(self) -> Case:
        if self.sent and self.random.random() < 0.1:  # Meta's redelivery: the very same bytes
            again = self.random.choice([c for c in self.sent if c.kind == "valid"] or self.sent)
            return Case(again.body, dict(again.headers), again.kind, list(again.keys))
        data, keys = self.delivery("valid")
        body = self.encode(data)
        return Case(body, self.headers(self.sign(body)), "valid", keys)

    def forged(self) -> Case:
        data, _ = self.delivery("forged")
        body = self.encode(data)
        good = self.sign(body)
        choice = self.random.randrange(10)
        signature: str | None
        if choice == 0:
            signature = None
        elif choice == 1:
            signature = self.sign(body, b"not-the-app-secret")
        elif choice == 2:
            flip = self.random.randrange(7, len(good))
            signature = good[:flip] + ("0" if good[flip] != "0" else "1") + good[flip + 1 :]
        elif choice == 3:
            signature = good.upper()
        elif choice == 4:
            signature = "sha1=" + hmac.new(self.secret, body, hashlib.sha1).hexdigest()
        elif choice == 5:
            signature = good[: self.random.randrange(len(good))]
        elif choice == 6:
            signature = good.removeprefix("sha256=")
        elif choice == 7:
            signature = good + self.random.choice(["0", "a", ",sha256=" + good[7:]])
        elif choice == 8:  # signed, then tampered with
            signature = good
            at = self.random.randrange(len(body))
            body = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
        else:
            signature = self.sign(body + b" ")
        headers = self.headers(signature)
        if choice == 0 and self.random.random() < 0.5:
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(self.secret, body, hashlib.sha1).hexdigest()
        return Case(body, headers, "forged")

    def signed(self) -> Case:
        """A correctly signed body that is broken or odd: whatever it stores, it must not crash the receiver."""
        data, _ = self.delivery("signed")
        body = self.mutate(data)
        headers = self.headers(self.sign(body))
        if self.random.random() < 0.05:
            headers["content-encoding"] = "gzip"
        return Case(body, headers, "signed")

    def mutate(self, data: dict[str, object]) -> bytes:
        pick = self.random.randrange(16)
        entries = data["entry"]
        assert isinstance(entries, list)
        value = entries[0]["changes"][0]["value"]
        odd_ids: list[object] = [
            1.5,
            -1,
            True,
            None,
            "",
            "12a",
            "\uff11\uff12\uff13",  # fullwidth digits
            "9" * 41,
            10**45,
            [1],
            {"id": 1},
            "1\u0000",
            "\ud800",
            " 12",
        ]
        if pick == 0:
            return json.dumps(data).encode()[: self.random.randrange(1, 40)]
        if pick == 1:
            return b"\xff\xfe\x00garbage" + bytes(self.random.randrange(256) for _ in range(20))
        if pick == 2:
            depth = self.random.choice([50, 900, 5000, 20000])
            return ("[" * depth + "]" * depth).encode()
        if pick == 3:
            return gzip.compress(json.dumps(data).encode())
        if pick == 4:
            value[self.random.choice(["leadgen_id", "page_id"])] = self.random.choice(odd_ids)
        elif pick == 5:
            entries[0]["id"] = self.random.choice(odd_ids)
        elif pick == 6:
            data["object"] = self.random.choice(["user", "instagram", "", "page\u0000", "\ud83d", 7, None])
        elif pick == 7:
            entries[0]["changes"][0]["field"] = self.random.choice(["feed", "leadgen_update", "", "\u0000", 3])
        elif pick == 8:
            data["entry"] = self.random.choice([{}, "entry", None, 5, [[]], [None]])
        elif pick == 9:
            entries[0]["changes"] = self.random.choice([{}, "x", [None], [[]], [{"field": "leadgen"}]])
        elif pick == 10:
            entries[0]["changes"][0]["value"] = {"nested": {"leadgen_id": value["leadgen_id"]}}
        elif pick == 11:
            del entries[0]["changes"]
            entries[0]["messaging"] = [{"sender": {"id": "1"}}]
        elif pick == 12:
            data["pad"] = "x" * (CAP + self.random.randrange(1, 1000))
        elif pick == 13:
            value["page_id"] = self.ident("signed")  # another Page than its entry's
        elif pick == 14:
            return json.dumps(data).encode().replace(b"{", b'{"dup": 1, ', 1) + b" \n\t"
        else:
            return json.dumps([data]).encode()
        return json.dumps(data).encode("utf-8", "surrogatepass")

    def case(self) -> Case:
        roll = self.random.random()
        made = self.valid() if roll < 0.25 else self.forged() if roll < 0.65 else self.signed()
        self.sent.append(made)
        return made


@dataclass
class Api:
    url: str
    secret: str
    sessions: Callable[..., object]


@pytest.fixture(scope="module")
def api(hub_env: dict[str, str], sandbox_url: str) -> Iterator[Api]:
    """`synchub api` in its own process (no worker: storing is what is checked), under a 64 KiB body cap."""
    port = free_port()
    secret = secrets.token_urlsafe(24)
    env = {
        **facebook_env(hub_env, sandbox_url, port, "1" + "0" * 14, secret),
        "SYNCHUB_FACEBOOK_LEADS__WEBHOOK_MAX_BODY_BYTES": str(CAP),
        "SYNCHUB_LOG_LEVEL": "WARNING",
    }
    process = spawn(
        [sys.executable, "-m", "hub", "api", "--port", str(port)],
        env=clean_environ(env),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/webhooks/{SLUG}", timeout=1).status_code == 403
        except httpx.HTTPError:
            return False

    engine = make_engine(settings_from_env(env).database_url)
    sessions = session_factory(engine)
    with sessions() as session:
        first = (session.scalar(select(func.max(WebhookDelivery.id))) or 0) + 1
    try:
        wait_for(up, timeout=30, interval=0.1, what="synchub api to answer")
        yield Api(url, secret, sessions)
    finally:
        kill_group(process)
        # Thousands of pending deliveries of Pages nobody chose, and their tasks: later tests' workers and
        # sweepers of this session would work through them all. Nothing else stored or sent meanwhile.
        with sessions() as session, session.begin():
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.id >= first))
        redis.Redis.from_url(env["SYNCHUB_REDIS_URL"]).delete(QUEUE)
        engine.dispose()


def send_all(api: Api, cases: list[Case]) -> list[int]:
    """Every case over a few keep-alive connections of a lean client (pre-built bytes, status lines read)."""
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    path = f"/webhooks/{SLUG}"
    wire = [rawhttp.request(host, int(port), path, case.body, case.headers) for case in cases]
    return asyncio.run(rawhttp.post_each(host, int(port), wire, CONCURRENCY))


def test_ten_thousand_mutated_requests_never_fail_and_store_exactly_the_signed_deliveries(api: Api) -> None:
    generator = Generator(SEED, api.secret)
    cases = [generator.case() for _ in range(REQUESTS)]

    started, cpu = time.monotonic(), time.process_time()
    statuses = send_all(api, cases)
    print(f"{REQUESTS} requests in {time.monotonic() - started:.1f} s, {time.process_time() - cpu:.1f} s CPU here")

    crashed = [(cases[i].kind, cases[i].body[:80], s) for i, s in enumerate(statuses) if s >= 500 or s == 0]
    assert crashed == []
    unexpected = [
        (c.kind, c.body[:80], dict(c.headers), s)
        for c, s in zip(cases, statuses, strict=True)
        if (c.kind, s) not in {("forged", 403), ("valid", 200), ("signed", 200), ("signed", 400), ("signed", 413)}
    ]
    assert unexpected[:5] == []
    assert {s for c, s in zip(cases, statuses, strict=True) if c.kind == "forged"} == {403}
    assert {s for c, s in zip(cases, statuses, strict=True) if c.kind == "valid"} == {200}
    assert {s for c, s in zip(cases, statuses, strict=True) if c.kind == "signed"} <= {200, 400, 413}
    assert {"forged", "valid", "signed"} == {c.kind for c in cases}

    expected = {key for case in cases if case.kind == "valid" for key in case.keys}
    model = WebhookDelivery
    with api.sessions() as session:  # type: ignore[attr-defined]
        rows = session.execute(
            select(model.dedupe_key, func.count())
            .where(model.connector == SLUG, model.route_key.like(generator.prefix["valid"] + "%"))
            .group_by(model.dedupe_key)
        ).all()
        mine = model.dedupe_key.contains(generator.prefix["forged"]) | model.route_key.contains(
            generator.prefix["forged"]
        )
        forged = session.scalar(select(func.count()).where(model.connector == SLUG, mine))
    assert forged == 0
    assert {key: count for key, count in rows} == dict.fromkeys(expected, 1)
