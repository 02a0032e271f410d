"""What the sandbox plays for `synchub dev`: each auth provider, the connectors it serves, its demo accounts, and
how to give the hub an OAuth client at it; and the real servers it runs for providers connected by a form (a
Radicale for CalDAV). The dev command reads this and names no provider itself."""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox import radicale
from sandbox.admin_client import SandboxAdmin
from sandbox.facebook.admin import TESTING_PATH
from sandbox.facebook.state import DEMO_USERS
from sandbox.google.state import DEFAULT_ACCOUNTS

FACEBOOK_CALLBACK = "/oauth/facebook/callback"
FACEBOOK_WEBHOOK = "/webhooks/facebook_leads"


@dataclass(frozen=True)
class Played:
    auth_provider: str
    connectors: tuple[str, ...]
    accounts: str
    register: Callable[[SandboxAdmin, str, str, str, str], None]
    webhooks: tuple[str, ...] = ()  # the connectors among them that receive webhooks (and need a verify token)
    try_it: str = ""  # what to do next, with `{sandbox}` for the sandbox's URL (`synchub dev` prints it)

    def client_env(self, admin: SandboxAdmin, sandbox_url: str, public_url: str) -> dict[str, str]:
        """Register an OAuth client for the hub at `public_url`; the variables that point the hub at it."""
        client_id, client_secret, verify_token = "synchub-dev", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        redirect = f"{public_url}/oauth/{self.auth_provider}/callback"
        self.register(admin, client_id, client_secret, redirect, verify_token)
        prefix = f"SYNCHUB_{self.auth_provider.upper()}__"
        return {
            prefix + "CLIENT_ID": client_id,
            prefix + "CLIENT_SECRET": client_secret,
            prefix + "BASE_URL": sandbox_url,
            **{f"SYNCHUB_{slug.upper()}__VERIFY_TOKEN": verify_token for slug in self.webhooks},
        }


def _google_client(admin: SandboxAdmin, client_id: str, client_secret: str, redirect_uri: str, _token: str) -> None:
    admin.register_client(client_id, client_secret, [redirect_uri])


def _described(accounts: tuple[tuple[str, str, int], ...]) -> str:
    return " or ".join(f"{email} ({count} contacts)" for email, _name, count in accounts)


def _facebook_app(admin: SandboxAdmin, app_id: str, app_secret: str, redirect_uri: str, verify_token: str) -> None:
    """The app, with its leadgen webhook pointed at the hub (saved as in the App Dashboard, without the handshake)."""
    admin.facebook.register_app(app_id, app_secret, [redirect_uri], name="Synchub (dev)")
    callback = redirect_uri.removesuffix(FACEBOOK_CALLBACK) + FACEBOOK_WEBHOOK
    admin.facebook.subscribe_app(app_id, callback, verify_token)


def _facebook_users() -> str:
    return " or ".join(f"{name} (Pages: {', '.join(page for page, _ in pages)})" for name, _, pages in DEMO_USERS)


def _installed(connector: str) -> bool:
    """Whether the hub has the connector (the sandbox imports nothing of the hub: it only looks for the folder)."""
    return importlib.util.find_spec(f"connectors.{connector}") is not None


GOOGLE = Played("google", ("google_contacts",), _described(DEFAULT_ACCOUNTS), _google_client)
FACEBOOK = Played(
    "facebook",
    ("facebook_leads",),
    _facebook_users(),
    _facebook_app,
    webhooks=("facebook_leads",),
    try_it='then Choose Pages, tick one, Save, and press "Submit a test lead" at {sandbox}' + TESTING_PATH,
)
PLAYED: tuple[Played, ...] = tuple(play for play in (GOOGLE, FACEBOOK) if all(map(_installed, play.connectors)))


@dataclass(frozen=True)
class Served:
    """A real server `synchub dev` runs for an auth provider connected by a form: how to seed and start it (the
    Python package `name`, data in .synchub/<name>/), the hub's settings for it (its connect form's note says what
    to type), and the connectors it enables when they are installed."""

    name: str
    auth_provider: str
    connectors: tuple[str, ...]
    seed: Callable[[Path], None]
    argv: Callable[[Path, int], list[str]]
    env: Callable[[str], dict[str, str]]

    def installed(self) -> bool:
        return importlib.util.find_spec(self.name) is not None

    def enabled(self) -> tuple[str, ...]:
        return tuple(c for c in self.connectors if importlib.util.find_spec(f"connectors.{c}.spec") is not None)

    def tell(self, url: str, public_url: str) -> str:
        return (
            f"{self.auth_provider} is a local {self.name} at {url}: connect it at {public_url}/connect/"
            f"{self.auth_provider} (its form says what to type)."
        )


def _radicale_env(url: str) -> dict[str, str]:
    return {"SYNCHUB_CALDAV__ALLOW_PRIVATE_HOSTS": "true", "SYNCHUB_CALDAV__DEV_NOTE": radicale.note(url)}


RADICALE = Served("radicale", "caldav", ("caldav",), radicale.seed, radicale.argv, _radicale_env)
SERVED: tuple[Served, ...] = (RADICALE,)
