"""A lean HTTP/1.1 load client on raw asyncio streams: requests are built as bytes up front and sent over a few
keep-alive connections, one at a time each; only the status line, `Content-Length` and `Connection` of an answer
are read. A general client (httpx) spends more CPU per request than the receiver it tests, on a machine whose
cores the server shares. Standard library only: the bench's load generator imports it without the hub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

ATTEMPTS = 3
"""Tries per request: a connection the server closed (after a 413, say) is opened again and the request resent."""


def request(host: str, port: int, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """A POST as bytes on the wire, with the Host and Content-Length the server needs."""
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, data: bytes) -> int:
        """Send one request; its answer's status. Raises OSError (or IncompleteReadError) when the connection
        fails; the caller opens a new one."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length, close = 0, False
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def post_each(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    deadline: float | None = None,
    on_answer: Callable[[int, int], None] | None = None,
) -> list[int]:
    """Send every request (bytes from `request`) over `connections` connections, in order as they free up; each
    one's status, 0 when it got none. With `deadline` (a `time.perf_counter()` value) no request starts after it,
    and the ones not sent keep 0."""
    statuses = [0] * len(requests)
    at = 0

    async def worker() -> None:
        nonlocal at
        connection = Connection(host, port)
        try:
            while at < len(requests) and (deadline is None or time.perf_counter() < deadline):
                index = at
                at += 1
                for _ in range(ATTEMPTS):
                    try:
                        statuses[index] = await connection.exchange(requests[index])
                        break
                    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                        connection.close()
                if on_answer is not None:
                    on_answer(index, statuses[index])
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return statuses
