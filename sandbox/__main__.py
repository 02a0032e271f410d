"""`python -m sandbox --port N --seed S [--state-file F]`: serve the fake providers on 127.0.0.1, announce the URL."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from sandbox.app import create_app
from sandbox.persistence import SaveAfterEachRequest, StateFile
from sandbox.state import SandboxState
from sandbox.wire import TrackedH11Protocol

HOST = "127.0.0.1"


class AnnouncingServer(uvicorn.Server):
    """Prints the one line `sandbox/process.py` waits for, after the socket accepts requests."""

    def __init__(self, config: uvicorn.Config, port: int) -> None:
        super().__init__(config)
        self.port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            sys.stdout.write(f"sandbox listening on http://{HOST}:{self.port}\n")
            sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated accounts and contacts")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (logs go to stderr)")
    parser.add_argument(
        "--state-file", type=Path, help="keep the providers' state here across restarts (default: memory only)"
    )
    return parser.parse_args(argv)


def listening_socket(port: int) -> socket.socket:
    """Bound before uvicorn starts, so port 0 can be announced; IPPROTO_TCP lets asyncio set TCP_NODELAY.

    asyncio only disables Nagle on sockets whose `proto` is IPPROTO_TCP; a plain `socket.socket()` has proto 0,
    and every response then stalls 40 ms on the delayed ACK between its header and body writes.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    return sock


def app_for(args: argparse.Namespace) -> ASGIApp:
    """The sandbox app; with a state file, restored from it and saved after every change."""
    if args.state_file is None:
        return create_app(SandboxState.seeded(args.seed))
    file = StateFile(args.state_file)
    state = file.load() or SandboxState.seeded(args.seed)
    file.save(state)
    return SaveAfterEachRequest(create_app(state), state, file)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sock = listening_socket(args.port)
    app = app_for(args)
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="off", http=TrackedH11Protocol)
    AnnouncingServer(config, sock.getsockname()[1]).run(sockets=[sock])


if __name__ == "__main__":
    main()
