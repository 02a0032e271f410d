"""Shared plumbing for Google APIs: per-thread cached resources, bearer injection, one 401 refresh-and-retry, and
typed decoding of answers (msgspec) instead of the client library's `json.loads` into dicts."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import googleapiclient
import httplib2
import msgspec
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest
from googleapiclient.model import JsonModel

from connectors.base import Credentials
from core.errors import ConnectorError, PayloadRejected, Retryable
from core.metrics import provider_answered
from core.scopes import Scopes

T = TypeVar("T")

HTTP_TIMEOUT_SECONDS = 30
DISCOVERY_DIR = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
_local = threading.local()

Classifier = Callable[[int, Mapping[str, Any], Mapping[str, str]], ConnectorError]


def discovery(api: str, version: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DISCOVERY_DIR / f"{api}.{version}.json").read_text())
    return document


def method_scopes(api: str, version: str, *path: str) -> Scopes:
    """The scopes a discovery document says a method accepts: one group, any one of them suffices. A capability
    that calls several methods needs each one's group (`&`)."""
    node: dict[str, Any] = discovery(api, version)
    for resource in path[:-1]:
        node = node["resources"][resource]
    return Scopes.any_of(node["methods"][path[-1]]["scopes"])


class UndecodedJson(JsonModel):  # type: ignore[misc]
    """JSON on the wire exactly as the library's own model asks for it (Accept, `alt=json`), and errors raised the
    same way, but a successful body is handed back as bytes for the caller's typed decoder."""

    def deserialize(self, content: bytes) -> bytes:
        return content

    @property
    def no_content_response(self) -> bytes:
        return b"{}"


def service(api: str, version: str, endpoint: str) -> Any:
    """A discovery-built service for this thread (httplib2 is not thread-safe), without credentials."""
    cache: dict[tuple[str, str, str], Any] = _local.__dict__.setdefault("services", {})
    key = (api, version, endpoint)
    if key not in cache:
        cache[key] = build(
            api,
            version,
            http=httplib2.Http(timeout=HTTP_TIMEOUT_SECONDS),
            static_discovery=True,
            client_options={"api_endpoint": endpoint},
            cache_discovery=False,
            model=UndecodedJson(),
        )
    return cache[key]


def resource(api: str, version: str, endpoint: str, *path: str) -> Any:
    """A service's resource object (`resource("calendar", "v3", e, "events")` is `service(...).events()`), cached
    for this thread like the service: building one from the discovery document cost ~6 ms, more than the call."""
    cache: dict[tuple[str, ...], Any] = _local.__dict__.setdefault("resources", {})
    key = (api, version, endpoint, *path)
    if key not in cache:
        found = service(api, version, endpoint)
        for name in path:
            found = getattr(found, name)()
        cache[key] = found
    return cache[key]


def error_body(error: HttpError) -> dict[str, Any]:
    try:
        body = json.loads(error.content or b"{}")
    except ValueError:
        return {}
    inner = body.get("error") if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else {}


def decoded(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """A typed answer. A body that is not JSON (cut short, or a proxy's error page) is retried, within the run's
    bounded attempts; valid JSON of another shape would fail the same way every time, so it is not."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise PayloadRejected(f"Google answered in a shape this hub cannot read ({exc})") from exc
    except msgspec.DecodeError as exc:
        raise Retryable("Google's answer was not complete JSON") from exc


def execute(
    make_request: Callable[[], HttpRequest],
    credentials: Credentials,
    classify: Classifier,
    decoder: msgspec.json.Decoder[T],
    sent: Callable[[], None],
    *,
    connector: str,
) -> T:
    """Run a request with a fresh bearer token; a 401 refreshes once and retries, a second is classified. `sent`
    is told of each request as it leaves, the retry too; each answer's status is counted for `connector`."""
    token = credentials.access_token()
    for attempt in (1, 2):
        request = make_request()
        request.headers["authorization"] = f"Bearer {token}"
        sent()
        try:
            body: bytes = request.execute(num_retries=0)
        except HttpError as exc:
            provider_answered(connector, exc.resp.status)
            if exc.resp.status == 401 and attempt == 1:
                token = credentials.rejected(token)
                continue
            raise classify(exc.resp.status, error_body(exc), dict(exc.resp)) from exc
        except (TimeoutError, ConnectionError, httplib2.HttpLib2Error, OSError) as exc:
            provider_answered(connector, None)
            raise Retryable(f"Google could not be reached ({type(exc).__name__})") from exc
        except http.client.HTTPException as exc:  # a body cut short, a bad status line: broken like a 5xx
            provider_answered(connector, None)
            raise Retryable(f"Google's answer broke off on the connection ({type(exc).__name__})") from exc
        provider_answered(connector, 200)  # the client hands back the body of any 2xx
        return decoded(decoder, body)
    raise AssertionError("unreachable")
