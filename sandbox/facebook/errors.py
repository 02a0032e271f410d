"""Graph error bodies as Meta sends them (`error.message/type/code/error_subcode/fbtrace_id`, nearly always HTTP
400), with the usage headers that come with throttling."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import msgspec
from starlette.responses import JSONResponse

from sandbox.google.errors import ApiError

RATE_LIMITING = "For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting."
THROTTLES: dict[int, tuple[str, str]] = {
    4: ("app", "(#4) Application request limit reached"),
    17: ("app", "(#17) User request limit reached"),
    32: ("pages", "(#32) Page request limit reached"),
    613: ("pages", "(#613) Calls to this api have exceeded the rate limit."),
    80000: ("ads_insights", "(#80000) There have been too many calls from this ad-account."),
    80001: ("pages", "(#80001) There have been too many calls to this Page account."),
    80002: ("instagram", "(#80002) There have been too many calls to this Instagram account."),
    80003: ("custom_audience", "(#80003) There have been too many calls for this custom audience."),
    80004: ("ads_management", "(#80004) There have been too many calls to this ad-account."),
    80005: ("leadgen", "(#80005) There have been too many leadgen api calls to this Page account."),
    80006: ("messenger", "(#80006) There have been too many messenger api calls to this Page account."),
    80007: ("whatsapp_business_management", "(#80007) Rate limit hit for this WhatsApp Business account."),
    80008: ("whatsapp_business_management", "(#80008) There have been too many calls to this WhatsApp account."),
    80009: ("catalog_management", "(#80009) There have been too many calls to this Catalog account."),
    80010: ("catalog_management", "(#80010) There have been too many calls to this Catalog account."),
    80011: ("catalog_management", "(#80011) There have been too many calls to this Catalog account."),
    80012: ("catalog_management", "(#80012) There have been too many calls to this Catalog account."),
    80013: ("catalog_management", "(#80013) There have been too many calls to this Catalog account."),
    80014: ("catalog_batch", "(#80014) There have been too many calls for the batch uploads to this catalog account."),
}
TOKEN_ERRORS: dict[int | None, str] = {
    None: "Invalid OAuth access token - Cannot parse access token",
    458: "Error validating access token: The user has not authorized application {app}.",
    459: "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow "
    "the instructions given.",
    460: "Error validating access token: The session has been invalidated because the user changed their password "
    "or Facebook has changed the session for security reasons.",
    463: "Error validating access token: Session has expired on {expired}. The current time is {now}.",
    464: "Error validating access token: Sessions for the user are not allowed because the user is not a confirmed "
    "user.",
    467: "Error validating access token: The session is invalid because the user logged out.",
    492: "Error validating access token: The user is not an admin of the Page.",
}
OTHER_MESSAGES: dict[int, str] = {
    1: "An unknown error occurred",
    2: "An unexpected error has occurred. Please retry your request later.",
    10: "(#10) Application does not have permission for this action",
    100: "(#100) Invalid parameter",
    190: TOKEN_ERRORS[None],
    200: "(#200) Permissions error",
    210: "(#210) A page access token is required to request this resource.",
}
TRANSIENT = frozenset({1, 2, *THROTTLES})


class GraphJSONResponse(JSONResponse):
    media_type = "application/json; charset=UTF-8"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class GraphError(ApiError):
    """Raised inside a Graph route; answered as Meta's error envelope."""


def trace_id() -> str:
    return secrets.token_urlsafe(8)


def error_body(
    code: int,
    message: str | None = None,
    type_: str | None = None,
    subcode: int | None = None,
    is_transient: bool | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message or default_message(code),
        "type": type_ or ("GraphMethodException" if code == 100 else "OAuthException"),
        "code": code,
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if is_transient is not None or code in TRANSIENT:
        error["is_transient"] = code in TRANSIENT if is_transient is None else is_transient
    error["fbtrace_id"] = trace_id()
    return {"error": error}


def default_message(code: int) -> str:
    if code in THROTTLES:
        return f"{THROTTLES[code][1]} Wait a bit and try again. {RATE_LIMITING}"
    return OTHER_MESSAGES.get(code, f"(#{code}) An error occurred")


def graph_error(
    code: int,
    message: str | None = None,
    subcode: int | None = None,
    type_: str | None = None,
    status: int = 400,
    headers: dict[str, str] | None = None,
    is_transient: bool | None = None,
) -> GraphError:
    body = error_body(code, message, type_, subcode, is_transient)
    headers = dict(headers or {})
    if code == 190:
        text = body["error"]["message"].replace('"', "'")
        headers["WWW-Authenticate"] = f'OAuth "Facebook Platform" "invalid_token" "{text}"'
    return GraphError(GraphJSONResponse(body, status_code=status, headers=headers))


def token_error(subcode: int | None, app_name: str = "", expired_at: float = 0.0) -> GraphError:
    stamp = "%A, %d-%b-%y %H:%M:%S UTC"
    message = TOKEN_ERRORS.get(subcode, TOKEN_ERRORS[None]).format(
        app=app_name, expired=time.strftime(stamp, time.gmtime(expired_at)), now=time.strftime(stamp, time.gmtime())
    )
    return graph_error(190, message, subcode)


def unknown_object(node: str, method: str = "get") -> GraphError:
    message = (
        f"Unsupported {method} request. Object with ID '{node}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api"
    )
    return graph_error(100, message, 33, "GraphMethodException")


def invalid_parameter(message: str) -> GraphError:
    return graph_error(100, f"(#100) {message}", type_="OAuthException")


def missing_permission(permission: str, code: int) -> GraphError:
    if code == 10:
        return graph_error(10, f"(#10) This endpoint requires the '{permission}' permission.")
    return graph_error(200, f"(#200) Requires {permission} permission to manage the object")


def usage_headers(code: int, owner: str, minutes: int) -> dict[str, str]:
    """X-App-Usage at 100% and the owner's X-Business-Use-Case-Usage entry for a throttle error."""
    kind = THROTTLES.get(code, ("pages", ""))[0]
    buc_type = "pages" if kind == "app" else kind
    entry = {
        "type": buc_type,
        "call_count": 100,
        "total_cputime": 34,
        "total_time": 41,
        "estimated_time_to_regain_access": minutes,
    }
    return {
        "X-App-Usage": json.dumps({"call_count": 100, "total_cputime": 34, "total_time": 41}),
        "X-Business-Use-Case-Usage": json.dumps({owner: [entry]}),
    }


def server_error_body(status_code: int) -> dict[str, Any]:
    """What a fault at a Graph path answers: code 1 or 2, transient."""
    return error_body(2 if status_code in (502, 503, 504) else 1)
