"""Connection-level faults: the server's open connections by peer, and the ways to break one below HTTP."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Literal

from uvicorn.protocols.http.h11_impl import H11Protocol

ConnectionFault = Literal["reset", "short_body", "bad_status_line"]
Peer = tuple[str, int]

SHORT_BODY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: 4096\r\n\r\n"
    b'{"connections": [{"resourceName": "people/c'
)
BAD_STATUS_LINE = b"SANDBOX 2OO NOT-HTTP\r\n\r\n"
OPEN: dict[Peer, asyncio.Transport] = {}


class TrackedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, registering each connection's transport under the peer address the ASGI scope
    names as `client`, so a fault can write raw bytes to it or reset it (ASGI itself cannot)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.peer = peer_of(transport)
        if self.peer is not None:
            OPEN[self.peer] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        peer = getattr(self, "peer", None)
        if peer is not None and OPEN.get(peer) is self.transport:
            del OPEN[peer]
        super().connection_lost(exc)


def peer_of(transport: asyncio.BaseTransport) -> Peer | None:
    info = transport.get_extra_info("peername")
    return (str(info[0]), int(info[1])) if isinstance(info, tuple) and len(info) >= 2 else None


def reset(transport: asyncio.Transport) -> None:
    """A TCP RST: linger zero, then close without flushing."""
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def short_body(transport: asyncio.Transport) -> None:
    """A 200 whose Content-Length promises more than is sent before the connection closes."""
    transport.write(SHORT_BODY)
    transport.close()


def bad_status_line(transport: asyncio.Transport) -> None:
    transport.write(BAD_STATUS_LINE)
    transport.close()


BREAKS: dict[ConnectionFault, Callable[[asyncio.Transport], None]] = {
    "reset": reset,
    "short_body": short_body,
    "bad_status_line": bad_status_line,
}


def break_connection(client: Peer | None, fault: ConnectionFault) -> None:
    """Break the connection a request came on (its ASGI scope's `client`); only the sandbox's own server
    (`python -m sandbox`) registers connections."""
    transport = OPEN.get((client[0], client[1])) if client else None
    if transport is None:
        raise RuntimeError("connection faults need the sandbox's own server: run it with `python -m sandbox`")
    BREAKS[fault](transport)
