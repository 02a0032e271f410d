"""What the sandbox plays for `synchub dev`: each auth provider, the connectors it serves, its demo accounts, and
how to give the hub an OAuth client at it. The dev command reads this and names no provider itself."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.admin_client import SandboxAdmin
from sandbox.google.state import DEFAULT_ACCOUNTS


@dataclass(frozen=True)
class Played:
    auth_provider: str
    connectors: tuple[str, ...]
    accounts: str
    register: Callable[[SandboxAdmin, str, str, str], None]

    def client_env(self, admin: SandboxAdmin, sandbox_url: str, public_url: str) -> dict[str, str]:
        """Register an OAuth client for the hub at `public_url`; the variables that point the hub at it."""
        client_id, client_secret = "synchub-dev", secrets.token_urlsafe(24)
        self.register(admin, client_id, client_secret, f"{public_url}/oauth/{self.auth_provider}/callback")
        prefix = f"SYNCHUB_{self.auth_provider.upper()}__"
        return {
            prefix + "CLIENT_ID": client_id,
            prefix + "CLIENT_SECRET": client_secret,
            prefix + "BASE_URL": sandbox_url,
        }


def _google_client(admin: SandboxAdmin, client_id: str, client_secret: str, redirect_uri: str) -> None:
    admin.register_client(client_id, client_secret, [redirect_uri])


def _described(accounts: tuple[tuple[str, str, int], ...]) -> str:
    return " or ".join(f"{email} ({count} contacts)" for email, _name, count in accounts)


PLAYED: tuple[Played, ...] = (Played("google", ("google_contacts",), _described(DEFAULT_ACCOUNTS), _google_client),)
