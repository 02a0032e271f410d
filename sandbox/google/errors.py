"""Error bodies as Google sends them: google.rpc Status for the APIs, OAuth JSON for the token endpoints."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import JSONResponse

NO_STORE = {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate", "Pragma": "no-cache"}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
PEOPLE_SERVICE = "people.googleapis.com"
LIST_CONNECTIONS = "google.people.v1.PeopleService.ListConnections"
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
    "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
SERVER_ERRORS: dict[int, tuple[str, str]] = {
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "Internal error encountered."),
    502: ("UNAVAILABLE", "The service is currently unavailable."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request timed out."),
}


class GoogleJSONResponse(JSONResponse):
    """Compact UTF-8 JSON like Starlette's, rendered by msgspec: a 1,000-person page costs the sandbox a tenth of
    what `json.dumps` does, so a benchmark's provider takes little of the CPU the hub is measured on."""

    media_type = "application/json; charset=UTF-8"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class ApiError(Exception):
    """Raised inside a route; the app answers with `response` as it stands."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def rpc_body(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def rpc_error(
    code: int,
    status: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> ApiError:
    return ApiError(GoogleJSONResponse(rpc_body(code, status, message, details), status_code=code, headers=headers))


def error_info(reason: str, domain: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"@type": ERROR_INFO, "reason": reason, "domain": domain}
    if metadata:
        info["metadata"] = metadata
    return info


def unauthenticated() -> ApiError:
    details = [error_info("ACCESS_TOKEN_TYPE_UNSUPPORTED", "googleapis.com", {"service": PEOPLE_SERVICE})]
    return rpc_error(401, "UNAUTHENTICATED", UNAUTHENTICATED_MESSAGE, details, BEARER_CHALLENGE)


def scope_insufficient(method: str) -> ApiError:
    metadata = {"service": PEOPLE_SERVICE, "method": method}
    details = [error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com", metadata)]
    return rpc_error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.", details)


def invalid_argument(message: str) -> ApiError:
    return rpc_error(400, "INVALID_ARGUMENT", message)


def expired_sync_token(status: str) -> ApiError:
    message = "Sync token is expired. Clear local cache and retry call without the sync token."
    return rpc_error(400, status, message, [error_info("EXPIRED_SYNC_TOKEN", PEOPLE_SERVICE)])


def quota_exceeded(limit_name: str, limit_id: str) -> ApiError:
    message = (
        f"Quota exceeded for quota metric 'Read requests' and limit '{limit_name}' of service "
        f"'{PEOPLE_SERVICE}' for consumer 'project_number:1000000000000'."
    )
    metadata = {
        "service": PEOPLE_SERVICE,
        "consumer": "projects/1000000000000",
        "quota_metric": f"{PEOPLE_SERVICE}/read_requests",
        "quota_limit": limit_id,
    }
    return rpc_error(
        429, "RESOURCE_EXHAUSTED", message, [error_info("RATE_LIMIT_EXCEEDED", "googleapis.com", metadata)]
    )


def server_error_body(status_code: int) -> dict[str, Any]:
    status, message = SERVER_ERRORS.get(status_code, ("UNKNOWN", "Unknown error."))
    return rpc_body(status_code, status, message)


def oauth_error(status_code: int, error: str, description: str, headers: dict[str, str] | None = None) -> ApiError:
    body = {"error": error, "error_description": description}
    return ApiError(GoogleJSONResponse(body, status_code=status_code, headers={**NO_STORE, **(headers or {})}))
