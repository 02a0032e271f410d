"""What the sandbox holds for an account, read through the real People API, mapped independently of the hub."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox.admin_client import SandboxAdmin

FIELDS = "metadata,names,emailAddresses,phoneNumbers,organizations"


def people(admin: SandboxAdmin, account: str, client_id: str) -> dict[str, dict[str, Any]]:
    token = admin.mint_tokens(account, client_id, ["https://www.googleapis.com/auth/contacts.readonly"])["access_token"]
    found: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {"personFields": FIELDS, "pageSize": 1000}
    while True:
        body = httpx.get(
            f"{admin.base_url}/v1/people/me/connections", params=params, headers={"authorization": f"Bearer {token}"}
        ).json()
        found.update({p["resourceName"]: p for p in body.get("connections", [])})
        if "nextPageToken" not in body:
            return found
        params["pageToken"] = body["nextPageToken"]


def primary(items: list[dict[str, Any]]) -> dict[str, Any]:
    return next((i for i in items if i.get("metadata", {}).get("primary")), items[0] if items else {})


def expected(person: dict[str, Any]) -> dict[str, Any]:
    name, org = primary(person.get("names", [])), primary(person.get("organizations", []))
    return {
        "external_id": person["resourceName"],
        "display_name": name.get("displayName"),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "emails": [
            {"value": e["value"], "type": e.get("type"), "primary": bool(e.get("metadata", {}).get("primary"))}
            for e in person.get("emailAddresses", [])
        ],
        "phones": [
            {"value": p["value"], "type": p.get("type"), "primary": bool(p.get("metadata", {}).get("primary"))}
            for p in person.get("phoneNumbers", [])
        ],
        "organization": org.get("name"),
        "job_title": org.get("title"),
    }


def as_stored(contact: dict[str, Any]) -> dict[str, Any]:
    return {
        key: contact[key]
        for key in (
            "external_id",
            "display_name",
            "given_name",
            "family_name",
            "emails",
            "phones",
            "organization",
            "job_title",
        )
    }
