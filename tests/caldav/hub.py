"""A hub in this process for the CalDAV connect tests, with its own CalDAV settings, and what it keeps."""

from __future__ import annotations

import http.server
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.models import AuditEvent, Connection
from core.settings import Settings
from hub.app import create_app
from tests import signin
from tests.conftest import LiveServer, free_port, settings_from_env
from token_vault.models import SealedCredential
from token_vault.vault import Vault, key_ring, secret_kind


@dataclass
class Hub:
    """A hub (API and pages) in this process with its own CalDAV settings, and what its browsers received."""

    url: str
    app: FastAPI
    settings: Settings
    sessions: sessionmaker[Session]
    jwt_secret: str
    responses: list[httpx.Response] = field(default_factory=list)
    browsers: list[httpx.Client] = field(default_factory=list)

    def browser(self, user: str, workspace: str = "ws-caldav") -> httpx.Client:
        browser = signin.browser(self.url, self.jwt_secret, user, workspace, event_hooks={"response": [self._keep]})
        self.browsers.append(browser)
        return browser

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)

    def submit(self, browser: httpx.Client, url: str, username: str, password: str, **hidden: str) -> httpx.Response:
        """The connect form as a person fills it in: open it, type, press Connect."""
        page = browser.get(f"{self.url}/connect/caldav", params=hidden)
        assert page.status_code == 200, page.text
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
        fields.update(server_url=url, username=username, password=password)
        return browser.post(f"{self.url}/connect/caldav", data=fields)

    def api_connect(self, browser: httpx.Client, url: str, username: str, password: str, **body: Any) -> httpx.Response:
        fields = {"server_url": url, "username": username, "password": password}
        return browser.post(f"{self.url}/api/v1/connect/caldav", json={"fields": fields, **body})

    def stored(self, user: str) -> dict[str, int]:
        """What the hub keeps for `user`: connections, sealed credentials and audit lines."""
        with self.sessions() as session:
            ids = list(session.scalars(select(Connection.id).where(Connection.user_id == user)))
            credentials = session.scalar(select(func.count()).where(SealedCredential.connection_id.in_(ids))) or 0
            audits = session.scalar(select(func.count()).where(AuditEvent.connection_id.in_(ids))) or 0
        return {"connections": len(ids), "credentials": credentials, "audit": audits}

    def secrets(self, connection_id: uuid.UUID) -> dict[str, str]:
        vault = Vault(key_ring(self.settings.vault))
        with self.sessions() as session:
            connection = session.get_one(Connection, connection_id)
            found = {name: vault.read(session, connection, secret_kind(name)) for name in ("username", "password")}
        return {name: secret.value for name, secret in found.items() if secret is not None}

    def connection(self, connection_id: uuid.UUID) -> Connection:
        with self.sessions() as session:
            row = session.get_one(Connection, connection_id)
            session.expunge(row)
            return row


def hub_with(env: dict[str, str], engine: Engine, sessions: sessionmaker[Session], jwt_secret: str) -> Iterator[Hub]:
    port = free_port()
    settings = settings_from_env({**env, "SYNCHUB_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    app = create_app(settings, engine)
    with LiveServer(app, port) as server:
        hub = Hub(server.url, app, settings, sessions, jwt_secret)
        yield hub
        for browser in hub.browsers:  # open keep-alive connections would hold up the server's shutdown
            browser.close()


class WebPage(http.server.BaseHTTPRequestHandler):
    """A web server that is not CalDAV: HTML for everything, except a well-known redirect when it has one."""

    disable_nagle_algorithm = True
    redirect: str | None = None
    hits: list[str]

    def answer(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/.well-known/caldav") and self.redirect:
            self.send_response(301)
            self.send_header("Location", self.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<!doctype html><html><body><h1>Welcome to our shop</h1></body></html>"
        self.send_response(404 if self.path.startswith("/.well-known/") else 200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PROPFIND = do_OPTIONS = do_REPORT = answer

    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def web_page(
    redirect: str | None = None, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """A non-CalDAV web server on loopback (over https with `tls`, a certificate and its key): its URL and the
    requests it received."""
    hits: list[str] = []
    handler = type("Page", (WebPage,), {"redirect": redirect, "hits": hits})
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://{host}:{server.server_port}/", hits
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that accepts connections and never answers (the kernel accepts them into the backlog)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/", []
    finally:
        listener.close()


def closed_port() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/"


def certificate(folder: Path, *names: str) -> tuple[Path, Path]:
    """A self-signed certificate for `names` (its own CA: a deployment's private CA in miniature), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
