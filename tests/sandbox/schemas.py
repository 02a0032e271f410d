"""Response schemas: Google discovery documents as strict JSON Schema, and the OAuth bodies of providers.md."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient
from jsonschema import Draft202012Validator

DISCOVERY_DIR = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
STRING_FORMATS: dict[str, dict[str, Any]] = {
    "google-datetime": {"pattern": RFC3339},
    "byte": {"pattern": r"^[A-Za-z0-9+/_-]*={0,2}$"},
    "int64": {"pattern": r"^-?\d+$"},
    "uint64": {"pattern": r"^\d+$"},
    "date-time": {"pattern": RFC3339},
    "date": {"pattern": r"^\d{4}-\d{2}-\d{2}$"},
}
INTEGER_FORMATS: dict[str, dict[str, Any]] = {
    "int32": {"minimum": -(2**31), "maximum": 2**31 - 1},
    "uint32": {"minimum": 0, "maximum": 2**32 - 1},
}
RPC_STATUSES = [
    "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
]  # fmt: skip


def convert(node: dict[str, Any]) -> dict[str, Any]:
    """One discovery schema node as JSON Schema. Strict where Google is: no unknown keys, no empty repeated fields."""
    if "$ref" in node:
        return {"$ref": f"#/$defs/{node['$ref']}"}
    kind = node.get("type")
    if kind == "any":
        return {}
    schema: dict[str, Any] = {"type": kind}
    if "enum" in node:
        schema["enum"] = node["enum"]
    if kind == "string":
        schema.update(STRING_FORMATS.get(node.get("format", ""), {}))
    if kind == "integer":
        schema.update(INTEGER_FORMATS.get(node.get("format", ""), {}))
    if kind == "array":
        schema.update(items=convert(node["items"]), minItems=1)
    if kind == "object":
        if "properties" in node:
            schema["properties"] = {name: convert(child) for name, child in node["properties"].items()}
        additional = node.get("additionalProperties")
        schema["additionalProperties"] = convert(additional) if additional is not None else "properties" not in node
    return schema


@cache
def discovery(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DISCOVERY_DIR / f"{name}.json").read_text())
    return document


@cache
def people_definitions() -> dict[str, Any]:
    definitions = {name: convert(node) for name, node in discovery("people.v1")["schemas"].items()}
    status = definitions["Status"]
    rpc_error = {
        **status,
        "properties": {**status["properties"], "status": {"type": "string", "enum": RPC_STATUSES}},
        "required": ["code", "message", "status"],
    }
    definitions["ErrorResponse"] = {
        "type": "object",
        "properties": {"error": rpc_error},
        "required": ["error"],
        "additionalProperties": False,
    }
    return definitions


def people_schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}", "$defs": people_definitions()}


def without_min_items(schema: Any) -> Any:
    """Calendar (an older JSON API) sends empty lists, e.g. `"items": []` on an empty page."""
    if isinstance(schema, dict):
        return {k: without_min_items(v) for k, v in schema.items() if k != "minItems"}
    return schema


CALENDAR_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "errors": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "domain": {"type": "string"},
                            "reason": {"type": "string"},
                            "message": {"type": "string"},
                            "location": {"type": "string"},
                            "locationType": {"enum": ["parameter", "header"]},
                        },
                        "required": ["domain", "reason", "message"],
                        "additionalProperties": False,
                    },
                },
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "status": {"enum": RPC_STATUSES},
                "details": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["errors", "code", "message"],
            "additionalProperties": False,
        }
    },
    "required": ["error"],
    "additionalProperties": False,
}


@cache
def calendar_definitions() -> dict[str, Any]:
    definitions = {name: without_min_items(convert(node)) for name, node in discovery("calendar.v3")["schemas"].items()}
    definitions["ErrorResponse"] = CALENDAR_ERROR
    return definitions


def calendar_schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}", "$defs": calendar_definitions()}


CALENDAR_PATH = "/calendar/v3/"


def calendar_schema_for(path: str, status: int) -> dict[str, Any] | None:
    if status != 200:
        return None if status == 204 else calendar_schema("ErrorResponse")
    if path.endswith("/calendarList"):
        return calendar_schema("CalendarList")
    if path.endswith("/events/watch"):
        return calendar_schema("Channel")
    if path.endswith("/events"):
        return calendar_schema("Events")
    return None


TOKEN_RESPONSE = {
    "type": "object",
    "properties": {
        "access_token": {"type": "string", "minLength": 1},
        "expires_in": {"type": "integer", "minimum": 0},
        "token_type": {"const": "Bearer"},
        "scope": {"type": "string", "minLength": 1},
        "refresh_token": {"type": "string", "minLength": 1},
        "id_token": {"type": "string", "pattern": r"^[\w-]+\.[\w-]+\.[\w-]+$"},
        "refresh_token_expires_in": {"type": "integer", "minimum": 0},
    },
    "required": ["access_token", "expires_in", "token_type", "scope"],
    "additionalProperties": False,
}
OAUTH_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    "required": ["error", "error_description"],
    "additionalProperties": False,
}
USERINFO = {
    "type": "object",
    "properties": {
        "sub": {"type": "string", "pattern": r"^\d+$"},
        "email": {"type": "string"},
        "email_verified": {"type": "boolean"},
        "name": {"type": "string"},
        "given_name": {"type": "string"},
        "family_name": {"type": "string"},
        "picture": {"type": "string"},
    },
    "required": ["sub"],
    "additionalProperties": False,
}
JWKS = {
    "type": "object",
    "properties": {
        "keys": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "kty": {"const": "RSA"},
                    "alg": {"const": "RS256"},
                    "use": {"const": "sig"},
                    "kid": {"type": "string"},
                    "n": {"type": "string"},
                    "e": {"type": "string"},
                },
                "required": ["kty", "alg", "use", "kid", "n", "e"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["keys"],
    "additionalProperties": False,
}
PEOPLE_PATH = "/v1/people/"


def schema_for(path: str, status: int) -> dict[str, Any] | None:
    """The schema a JSON body at `path` with `status` must meet; None when the sandbox must not send JSON there."""
    if path.startswith(CALENDAR_PATH):
        return calendar_schema_for(path, status)
    if status >= 500 or path.startswith(PEOPLE_PATH):
        return people_schema("ListConnectionsResponse" if status == 200 else "ErrorResponse")
    if path == "/token":
        return TOKEN_RESPONSE if status == 200 else OAUTH_ERROR
    if path in ("/v1/userinfo", "/oauth2/v3/userinfo"):
        return USERINFO if status == 200 else OAUTH_ERROR
    if path == "/oauth2/v3/certs":
        return JWKS
    if path == "/revoke" and status != 200:
        return OAUTH_ERROR
    return None


class BodyValidator:
    """Checks every JSON body the sandbox serves to the tests; counts what it checked."""

    def __init__(self) -> None:
        self.checked = 0
        self.validators: dict[str, Draft202012Validator] = {}

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        key = json.dumps(schema, sort_keys=True)
        if key not in self.validators:
            Draft202012Validator.check_schema(schema)
            self.validators[key] = Draft202012Validator(schema)
        return self.validators[key]

    def check(self, path: str, status: int, content_type: str, content: bytes) -> None:
        if path.startswith("/_sandbox/"):
            return
        schema = schema_for(path, status)
        if "json" not in content_type:
            assert schema is None or not content, f"{path} {status} answered {content_type}, expected JSON"
            return
        assert schema is not None, f"{path} {status} served JSON with no schema to meet"
        body = json.loads(content)
        errors = sorted(self.validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{path} {status}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
        self.checked += 1
