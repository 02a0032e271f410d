"""A typed httpx client for the sandbox admin API, for tests, benchmarks and `synchub dev` in other processes."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

import httpx

from sandbox.facebook.admin_client import FacebookAdmin
from sandbox.google.calendar.admin_client import CalendarAdmin

TokenKind = Literal["access", "refresh"]


class LogEntry(TypedDict):
    id: int
    method: str
    path: str
    query: str
    status: int  # 0 when a connection fault broke the connection instead of answering
    account: str | None
    app: str | None
    time: float
    duration_ms: float
    fault: bool


class TokenRecord(TypedDict):
    value: str
    kind: TokenKind
    client_id: str
    account: str
    scopes: list[str]
    issued_at: float
    expires_at: float | None
    parent: str | None
    revoked: bool
    live: bool


class FaultRule(TypedDict, total=False):
    path_prefix: str
    status: int | None
    rate: float
    retry_after: float | None
    latency_ms: float
    body: str | None
    connection: Literal["reset", "short_body", "bad_status_line"] | None
    times: int | None
    skip: int


class SandboxAdmin:
    """Every method raises httpx.HTTPStatusError when the sandbox refuses the call."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url + "/_sandbox", timeout=timeout)

    def close(self) -> None:
        self.http.close()

    @property
    def facebook(self) -> FacebookAdmin:
        return FacebookAdmin(self.call)

    @property
    def calendar(self) -> CalendarAdmin:
        return CalendarAdmin(self.call)

    def __enter__(self) -> SandboxAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/health")
        return result

    def reset(self) -> None:
        self.call("POST", "/reset")

    def register_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        body = {"client_id": client_id, "client_secret": client_secret, "redirect_uris": redirect_uris}
        self.call("POST", "/google/clients", json=body)

    def seed_account(self, email: str, contacts: int = 0, name: str = "", seed: int | None = None) -> dict[str, Any]:
        body = {"email": email, "contacts": contacts, "name": name, "seed": seed}
        result: dict[str, Any] = self.call("POST", "/google/accounts", json=body)
        return result

    def add_contact(self, account: str, fields: dict[str, Any]) -> str:
        """The new contact's resource name (`people/c...`)."""
        name: str = self.call("POST", f"/google/accounts/{account}/contacts", json=fields)["resourceName"]
        return name

    def contact(self, account: str, resource_name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/google/accounts/{account}/contacts/{contact_id(resource_name)}")
        return result

    def update_contact(self, account: str, resource_name: str, fields: dict[str, Any], rename: bool = False) -> str:
        """The contact's resource name after the change (a new one when `rename`)."""
        path = f"/google/accounts/{account}/contacts/{contact_id(resource_name)}"
        name: str = self.call("PATCH", path, json=fields, params={"rename": rename})["resourceName"]
        return name

    def delete_contact(self, account: str, resource_name: str) -> None:
        self.call("DELETE", f"/google/accounts/{account}/contacts/{contact_id(resource_name)}")

    def expire_sync_tokens(self, account: str) -> None:
        self.call("POST", f"/google/accounts/{account}/sync-tokens/expire")

    def forget_sync_tokens(self, account: str) -> None:
        """The account no longer knows the sync tokens it issued: Google answers 400 "Sync token is invalid."."""
        self.call("POST", f"/google/accounts/{account}/sync-tokens/forget")

    def expire_access_tokens(self, account: str | None = None, client_id: str | None = None) -> int:
        return self.expire_tokens("access", account, client_id)

    def expire_tokens(self, kind: TokenKind, account: str | None = None, client_id: str | None = None) -> int:
        body = {"kind": kind, "account": account, "client_id": client_id}
        expired: int = self.call("POST", "/google/tokens/expire", json=body)["expired"]
        return expired

    def revoke_grant(self, account: str, client_id: str) -> int:
        revoked: int = self.call("POST", "/google/grants/revoke", json={"account": account, "client_id": client_id})[
            "revoked"
        ]
        return revoked

    def narrow_grant(self, account: str, client_id: str, remove: list[str]) -> int:
        """Take scopes away from a grant and its live tokens, as a user unticking a permission would."""
        body = {"account": account, "client_id": client_id, "remove": remove}
        narrowed: int = self.call("POST", "/google/grants/narrow", json=body)["narrowed"]
        return narrowed

    def mint_tokens(self, account: str, client_id: str, scopes: list[str], offline: bool = True) -> dict[str, Any]:
        """A token response as if the user had consented, without the browser flow."""
        body = {"account": account, "client_id": client_id, "scopes": scopes, "offline": offline}
        result: dict[str, Any] = self.call("POST", "/google/tokens", json=body)
        return result

    def tokens(
        self, account: str | None = None, client_id: str | None = None, kind: TokenKind | None = None
    ) -> list[TokenRecord]:
        params = {k: v for k, v in {"account": account, "client_id": client_id, "kind": kind}.items() if v}
        records: list[TokenRecord] = self.call("GET", "/google/tokens", params=params)
        return records

    def google_settings(self, **changes: Any) -> dict[str, Any]:
        """Change the given Google settings (none: just read them); returns all of them."""
        result: dict[str, Any] = self.call("PATCH", "/google/settings", json=changes)
        return result

    def set_faults(self, rules: list[FaultRule], seed: int = 0) -> None:
        self.call("PUT", "/faults", json={"seed": seed, "rules": rules})

    def clear_faults(self) -> None:
        self.call("DELETE", "/faults")

    def set_quota(
        self,
        per_app: int | None = None,
        per_user: int | None = None,
        window_seconds: float = 60.0,
        path_prefix: str = "/v1/people",
    ) -> None:
        body = {"per_app": per_app, "per_user": per_user, "window_seconds": window_seconds, "path_prefix": path_prefix}
        self.call("PUT", "/quotas", json=body)

    def clear_quota(self) -> None:
        self.call("DELETE", "/quotas")

    def request_log(self, after: int = 0) -> list[LogEntry]:
        entries: list[LogEntry] = self.call("GET", "/requests", params={"after": after})
        return entries

    def clear_log(self) -> None:
        self.call("DELETE", "/requests")


def contact_id(resource_name: str) -> str:
    return resource_name.removeprefix("people/")
