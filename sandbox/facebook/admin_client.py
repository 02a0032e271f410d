"""The fake Facebook's part of the typed admin client (`SandboxAdmin.facebook`), for tests, benchmarks and dev."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Call = Callable[..., Any]


class FacebookAdmin:
    """Every method raises httpx.HTTPStatusError when the sandbox refuses the call."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def register_app(
        self, app_id: str, app_secret: str, redirect_uris: list[str], name: str = "Sandbox App", proof: bool = True
    ) -> dict[str, Any]:
        body = {
            "app_id": app_id,
            "app_secret": app_secret,
            "redirect_uris": redirect_uris,
            "name": name,
            "require_appsecret_proof": proof,
        }
        result: dict[str, Any] = self.call("POST", "/facebook/apps", json=body)
        return result

    def apps(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/facebook/apps")
        return result

    def subscribe_app(
        self, app_id: str, callback_url: str, verify_token: str = "", fields: list[str] | None = None
    ) -> dict[str, Any]:
        """The App Dashboard's webhook setting, saved without the handshake."""
        body = {"callback_url": callback_url, "verify_token": verify_token, "fields": fields or ["leadgen"]}
        result: dict[str, Any] = self.call("PUT", f"/facebook/apps/{app_id}/subscription", json=body)
        return result

    def users(self) -> list[dict[str, Any]]:
        """Users with their Pages, each Page's forms (id, name, leads) and subscribed apps."""
        result: list[dict[str, Any]] = self.call("GET", "/facebook/users")
        return result

    def user(self, name: str) -> dict[str, Any]:
        return next(user for user in self.users() if user["name"] == name)

    def add_user(self, name: str, email: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", "/facebook/users", json={"name": name, "email": email})
        return result

    def add_page(self, user_id: str, name: str) -> str:
        page_id: str = self.call("POST", f"/facebook/users/{user_id}/pages", json={"name": name})["id"]
        return page_id

    def add_form(self, page_id: str, name: str, kind: str = "contact") -> str:
        form_id: str = self.call("POST", f"/facebook/pages/{page_id}/forms", json={"name": name, "kind": kind})["id"]
        return form_id

    def add_leads(self, form_id: str, count: int = 1, **options: Any) -> dict[str, Any]:
        """Submit leads on a form ({"leads": ids, "webhook_apps": ..., "deliveries": ...}); each fires a webhook to
        subscribed apps unless `webhook=False`. Options: field_data, created_time, is_organic, platform, flush."""
        result: dict[str, Any] = self.call("POST", f"/facebook/forms/{form_id}/leads", json={"count": count, **options})
        return result

    def lead(self, lead_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/facebook/leads/{lead_id}")
        return result

    def mint_token(
        self,
        user_id: str,
        app_id: str,
        permissions: list[str],
        pages: list[str] | None = None,
        declined: list[str] | None = None,
        long_lived: bool = True,
    ) -> dict[str, Any]:
        """A user token (and `page_tokens` by Page id) as if the user had logged in, without the dialog."""
        body = {
            "user_id": user_id,
            "app_id": app_id,
            "permissions": permissions,
            "pages": pages,
            "declined": declined or [],
            "long_lived": long_lived,
        }
        result: dict[str, Any] = self.call("POST", "/facebook/tokens", json=body)
        return result

    def tokens(self, user_id: str | None = None, app_id: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"user_id": user_id, "app_id": app_id}.items() if v}
        result: list[dict[str, Any]] = self.call("GET", "/facebook/tokens", params=params)
        return result

    def invalidate_tokens(self, user_id: str, app_id: str | None = None, subcode: int = 460) -> int:
        body = {"user_id": user_id, "app_id": app_id, "subcode": subcode}
        count: int = self.call("POST", "/facebook/tokens/invalidate", json=body)["invalidated"]
        return count

    def set_expiry(self, **fields: Any) -> dict[str, int]:
        """token / user_id / app_id select; expires_at and data_access_expires_at (Unix seconds) set."""
        result: dict[str, int] = self.call("POST", "/facebook/tokens/expiry", json=fields)
        return result

    def grants(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/facebook/grants")
        return result

    def inject_error(self, code: int, **rule: Any) -> dict[str, Any]:
        """Answer the next matching Graph calls with this error. Rule: error_subcode, message, type, status,
        app_id, page_id, path_prefix (unversioned), method, times (None: until cleared),
        estimated_time_to_regain_access (minutes), is_transient, seconds (applies for this long only)."""
        result: dict[str, Any] = self.call("POST", "/facebook/errors", json={"code": code, **rule})
        return result

    def clear_errors(self) -> None:
        self.call("DELETE", "/facebook/errors")

    def settings(self, **changes: Any) -> dict[str, Any]:
        """Change the given Facebook settings (none: just read them); returns all of them."""
        result: dict[str, Any] = self.call("PATCH", "/facebook/settings", json=changes)
        return result

    def deliveries(self, state: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"after": after, **({"state": state} if state else {})}
        result: list[dict[str, Any]] = self.call("GET", "/facebook/webhooks/deliveries", params=params)
        return result

    def resend(self, delivery_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", f"/facebook/webhooks/deliveries/{delivery_id}/resend")
        return result

    def flush_webhooks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("POST", "/facebook/webhooks/flush")
        return result
