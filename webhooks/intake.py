"""Storing a POST's deliveries on the receiver's event loop: one `INSERT ... ON CONFLICT DO NOTHING` over a few
pooled psycopg connections in autocommit, so the rows are committed (durable) when the statement returns, in
one round trip, with no thread hop, ORM session or pool pre-ping on the way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg
from sqlalchemy.engine import make_url

from connectors.base import Delivery
from core.models import utcnow
from webhooks.inbox import IGNORED, PENDING, Stored

CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 10_000

INSERT = """
INSERT INTO webhook_deliveries (connector, dedupe_key, route_key, payload, status, received_at, finished_at)
SELECT %(connector)s, d.key, d.route, d.payload, d.status, %(now)s,
       CASE WHEN d.status = %(ignored)s THEN %(now)s::timestamptz END
FROM unnest(%(keys)s::text[], %(routes)s::text[], %(payloads)s::text[]::jsonb[], %(statuses)s::text[])
     AS d(key, route, payload, status)
ON CONFLICT (connector, dedupe_key) DO NOTHING
RETURNING id, status
"""


def conninfo(database_url: str) -> str:
    """libpq's form of the hub's SQLAlchemy URL (`postgresql+psycopg://...`)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Pool:
    """Up to `size` autocommit connections, opened on first use; a connection that failed is dropped, not reused.
    Connections belong to the event loop that opened them: on another loop the pool starts afresh."""

    def __init__(self, conninfo: str, size: int = 4) -> None:
        self.conninfo, self.size = conninfo, size
        self._idle: list[psycopg.AsyncConnection[tuple[object, ...]]] = []
        self._open = 0
        self._free: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._free is None:
            for connection in self._idle:
                connection.pgconn.finish()
            self._idle, self._open, self._loop = [], 0, loop
            self._free = asyncio.Semaphore(self.size)
        return self._free

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        free = self._bind()
        async with free:
            connection = self._idle.pop() if self._idle else None
            if connection is None or connection.closed:
                connection = await psycopg.AsyncConnection.connect(
                    self.conninfo,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                )
            try:
                yield connection
            except Exception:
                self._give_back(connection)  # a refused value leaves it usable; a broken one is closed
                raise
            except BaseException:  # cancelled mid-statement: its state is unknown
                await connection.close()
                raise
            self._give_back(connection)

    def _give_back(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        if not connection.closed and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self._idle.append(connection)
        else:
            connection.pgconn.finish()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


async def store(pool: Pool, connector: str, deliveries: Sequence[Delivery]) -> Stored:
    """Insert the deliveries in one committed statement; one already stored (a redelivery) is left as it is.
    Raises psycopg.DataError for a value PostgreSQL refuses, another psycopg.Error when the database fails."""
    if not deliveries:
        return Stored(0, 0, [])
    params = {
        "connector": connector,
        "now": utcnow(),
        "ignored": IGNORED,
        "keys": [d.dedupe_key for d in deliveries],
        "routes": [d.route_key for d in deliveries],
        "payloads": [json.dumps(dict(d.payload)) for d in deliveries],
        "statuses": [IGNORED if d.ignored else PENDING for d in deliveries],
    }
    async with pool.connection() as connection:
        cursor = await connection.execute(INSERT, params, prepare=True)
        created = await cursor.fetchall()
    pending = sorted(int(row[0]) for row in created if row[1] == PENDING)  # type: ignore[call-overload]
    return Stored(len(deliveries), len(created), pending)
