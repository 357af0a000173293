"""The facade's errors: the gRPC -> HTTP table, and the handlers that render every failure.

An error is decided once, as an `OpenAIError` (status, message, OpenAI type/param/code). By
default it is rendered as OpenAI's `{"error": {"message", "type", "param", "code"}}`, including
the framework's own 404/405/413 and validation errors, so OpenAI SDKs raise their typed errors;
an API surface with its own shape registers a renderer for its paths (`add_error_renderer`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import grpc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from google.rpc import status_pb2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from cursorgate.v1 import errors_pb2
from facade.responses import OrjsonResponse

logger = logging.getLogger("facade.errors")

ErrorCode = errors_pb2.ErrorCode
GRPC_DETAILS_KEY = "grpc-status-details-bin"

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


@dataclass(eq=False)
class OpenAIError(Exception):
    """An error answer: raised anywhere in a request, rendered by the app's handler."""

    status: int
    message: str
    type: str = INVALID_REQUEST
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> Response:
        return OrjsonResponse(self.body(), status_code=self.status, headers=self.headers or None)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class HttpError(NamedTuple):
    status: int
    type: str
    code: str | None
    # Seconds for Retry-After when the failure carries no hint of its own (0: no header).
    retry_after: int = 0


# While core restarts (measured ~2 s under `cursorgate run`) callers are told to come back soon.
CORE_RETRY_AFTER_S = 1


# Core's typed ErrorCode -> HTTP answer. Types and codes follow what OpenAI itself sends:
# - UNAUTHENTICATED: OpenAI answers a bad key with 401 invalid_request_error/invalid_api_key.
# - MODEL_NOT_ALLOWED: OpenAI answers "project does not have access to model" with 403 and
#   type invalid_request_error (it has no "permission_error" type; that one is Anthropic's);
#   we keep its type and say why in the code: model_not_allowed.
# - RATE_LIMITED / QUOTA_EXCEEDED: both 429, told apart by code, as OpenAI does
#   (rate_limit_exceeded vs insufficient_quota) so SDK retry logic can tell them apart.
ERROR_TABLE: dict[int, HttpError] = {
    ErrorCode.ERROR_CODE_INVALID_REQUEST: HttpError(400, INVALID_REQUEST, None),
    ErrorCode.ERROR_CODE_REQUEST_TOO_LARGE: HttpError(413, INVALID_REQUEST, "request_too_large"),
    ErrorCode.ERROR_CODE_UNAUTHENTICATED: HttpError(401, INVALID_REQUEST, "invalid_api_key"),
    ErrorCode.ERROR_CODE_MODEL_NOT_ALLOWED: HttpError(403, INVALID_REQUEST, "model_not_allowed"),
    ErrorCode.ERROR_CODE_MODEL_NOT_FOUND: HttpError(404, INVALID_REQUEST, "model_not_found"),
    ErrorCode.ERROR_CODE_RATE_LIMITED: HttpError(429, "rate_limit_error", "rate_limit_exceeded"),
    ErrorCode.ERROR_CODE_QUOTA_EXCEEDED: HttpError(429, "insufficient_quota", "insufficient_quota"),
    ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE: HttpError(503, SERVER_ERROR, "upstream_unavailable"),
    ErrorCode.ERROR_CODE_NO_ACCOUNT_AVAILABLE: HttpError(503, SERVER_ERROR, "no_account_available"),
    ErrorCode.ERROR_CODE_STORE_UNAVAILABLE: HttpError(503, SERVER_ERROR, "store_unavailable", 1),
    # Core at capacity (admission control): refused before any upstream work, so safe to retry.
    ErrorCode.ERROR_CODE_OVERLOADED: HttpError(503, SERVER_ERROR, "overloaded", 1),
    ErrorCode.ERROR_CODE_UPSTREAM_OUTDATED_CLIENT: HttpError(502, SERVER_ERROR, "upstream_outdated_client"),
    ErrorCode.ERROR_CODE_UPSTREAM_AUTH: HttpError(502, SERVER_ERROR, "upstream_auth"),
    ErrorCode.ERROR_CODE_UPSTREAM_ERROR: HttpError(502, SERVER_ERROR, "upstream_error"),
    ErrorCode.ERROR_CODE_UPSTREAM_TIMEOUT: HttpError(504, SERVER_ERROR, "upstream_timeout"),
    ErrorCode.ERROR_CODE_INTERNAL: HttpError(500, SERVER_ERROR, "internal_error"),
    # The caller can fix it (the message says how: a "-max" suffix or max_mode): a 400.
    ErrorCode.ERROR_CODE_MAX_MODE_REQUIRED: HttpError(400, INVALID_REQUEST, "max_mode_required"),
    # The model could not be held to a strict response schema (one repair round was tried): the
    # upstream's failure, like any answer that is not what was asked for.
    ErrorCode.ERROR_CODE_OUTPUT_INVALID: HttpError(502, SERVER_ERROR, "output_schema_mismatch"),
    ErrorCode.ERROR_CODE_RESPONSE_NOT_FOUND: HttpError(404, INVALID_REQUEST, "response_not_found"),
}

# A failure without ErrorInfo did not come from core's own logic (core down, deadline hit on
# our side, a proxy in between): map by status code, with our own safe messages since the
# status details may hold anything. The statuses and messages are API-neutral; each API surface
# renders them in its own error shape (`from_grpc_error` for OpenAI's).
BARE_STATUS_TABLE: dict[grpc.StatusCode, tuple[HttpError, str]] = {
    # Core is down or restarting: the request was not served, so retrying it is safe.
    grpc.StatusCode.UNAVAILABLE: (
        HttpError(503, SERVER_ERROR, "core_unavailable", CORE_RETRY_AFTER_S),
        "The gateway core is unavailable; try again shortly.",
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        HttpError(504, SERVER_ERROR, "timeout"),
        "The request timed out before the model finished.",
    ),
    grpc.StatusCode.UNAUTHENTICATED: (
        HttpError(401, INVALID_REQUEST, "invalid_api_key"),
        "Incorrect or missing API key.",
    ),
    grpc.StatusCode.PERMISSION_DENIED: (
        HttpError(403, INVALID_REQUEST, "model_not_allowed"),
        "This API key may not use this model.",
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (
        HttpError(429, "rate_limit_error", "rate_limit_exceeded"),
        "Rate limit reached; retry later.",
    ),
    # The call was cancelled on the way (the link to core dropped it, or core shut down); the
    # request itself was fine, so it is worth retrying, not a server bug.
    grpc.StatusCode.CANCELLED: (
        HttpError(503, SERVER_ERROR, "core_unavailable", CORE_RETRY_AFTER_S),
        "The gateway core dropped the request; try again shortly.",
    ),
}
# Seconds a caller should wait after a bare 503 from core (Retry-After).
CORE_RETRY_AFTER_S = 1
BARE_DEFAULT = (HttpError(500, SERVER_ERROR, None), "The server had an error while processing your request.")

DEFAULT_MESSAGES: dict[int, str] = {
    400: "Invalid request.",
    401: "Incorrect or missing API key.",
    403: "This API key may not use this model.",
    404: "The model does not exist or you do not have access to it.",
    413: "Request too large.",
    429: "Too many requests; retry later.",
    500: "The server had an error while processing your request.",
    502: "The upstream model provider returned an error.",
    503: "The upstream model provider is unavailable; try again shortly.",
    504: "The upstream model provider timed out.",
}


def error_info_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> errors_pb2.ErrorInfo | None:
    """The `cursorgate.v1.ErrorInfo` inside `grpc-status-details-bin`, if any."""
    for key, value in metadata or ():
        if key != GRPC_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # malformed details must not turn into a 500
            logger.warning("unparsable %s from core", GRPC_DETAILS_KEY)
            return None
        for detail in status.details:
            if detail.Is(errors_pb2.ErrorInfo.DESCRIPTOR):
                info = errors_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
    return None


def retry_headers(http: HttpError, retry_after_ms: int = 0) -> dict[str, str]:
    """Retry-After (whole seconds, at least 1) for retryable answers: core's hint, else the table's."""
    if http.status not in (429, 503):
        return {}
    if retry_after_ms > 0:
        return {"Retry-After": str(max(1, math.ceil(retry_after_ms / 1000)))}
    return {"Retry-After": str(http.retry_after)} if http.retry_after else {}


def from_error_info(info: errors_pb2.ErrorInfo) -> OpenAIError:
    http = ERROR_TABLE.get(info.code, HttpError(500, SERVER_ERROR, None))
    headers = retry_headers(http, info.retry_after_ms)
    return OpenAIError(
        status=http.status,
        message=info.message or DEFAULT_MESSAGES.get(http.status, "Request failed."),
        type=http.type,
        param=info.param or ("model" if info.code == ErrorCode.ERROR_CODE_MODEL_NOT_FOUND else None),
        code=http.code,
        headers=headers,
    )


def from_grpc_error(error: grpc.aio.AioRpcError) -> OpenAIError:
    info = error_info_from_metadata(error.trailing_metadata())
    if info is not None:
        return from_error_info(info)
    http, message = BARE_STATUS_TABLE.get(error.code(), BARE_DEFAULT)
    if http.status >= 500:
        # Never shown to the caller (may hold internals), but operators need it. Core being
        # away is logged once by the channel's watcher (core_client.py), not once per request.
        level = logging.DEBUG if error.code() == grpc.StatusCode.UNAVAILABLE else logging.WARNING
        logger.log(level, "core call failed without ErrorInfo: %s %s", error.code().name, error.details())
    return OpenAIError(
        status=http.status, message=message, type=http.type, code=http.code, headers=retry_headers(http)
    )


# --- request validation --------------------------------------------------------------------

_FIELD = re.compile(r"[a-z_][a-z0-9_]*")
# Pydantic puts union-member names into error locations; they are not request fields.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "bytes"})


def param_from_loc(loc: Sequence[int | str]) -> str | None:
    """Render a pydantic error location OpenAI-style: ("body", "messages", 0, "content") ->
    "messages[0].content", dropping union-member tags pydantic inserts."""
    parts: list[str] = []
    previous: int | str | None = None
    for index, item in enumerate(loc):
        if index == 0 and item == "body":
            continue
        if isinstance(item, int):
            if not parts:
                return None  # a position in the raw JSON text, not a field
            parts[-1] += f"[{item}]"
        elif _FIELD.fullmatch(item) and item not in _TYPE_TAGS:
            # A discriminated union tags by the `type` value, which for OpenAI parts equals
            # the field that follows ("image_url", "image_url"): keep one.
            if item == previous:
                continue
            parts.append(item)
        else:
            continue
        previous = item
    return ".".join(parts) or None


def _validation_error(errors: Sequence[Any]) -> OpenAIError:
    if not errors:
        return OpenAIError(400, "Invalid request body.")
    # The deepest location names the field most precisely (union branches fail at several depths).
    chosen = max(errors, key=lambda e: len(e.get("loc", ())))
    kind = chosen.get("type")
    if kind == "json_invalid":
        return OpenAIError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            "using your HTTP library correctly. The API expects a JSON payload.)",
        )
    param = param_from_loc(chosen.get("loc", ()))
    if param is None:
        message = "The request body must be a JSON object."
        if kind != "missing" and kind not in {"model_attributes_type", "dict_type", "model_type"}:
            message = f"Invalid request body: {chosen.get('msg', 'invalid value')}."
        return OpenAIError(400, message)
    if kind == "missing":
        return OpenAIError(400, f"Missing required parameter: '{param}'.", param=param)
    msg = str(chosen.get("msg", "invalid value")).removeprefix("Value error, ")
    return OpenAIError(400, f"Invalid value for '{param}': {msg}.", param=param)


# --- handlers ---------------------------------------------------------------------------

Renderer = Callable[[OpenAIError], Response]
PathMatcher = Callable[[str], bool]


def add_error_renderer(app: FastAPI, matches: PathMatcher, render: Renderer) -> None:
    """Errors of requests whose path `matches` are rendered by `render` (an API's own shape)."""
    app.state.error_renderers.append((matches, render))


def render_error(scope: Scope, error: OpenAIError) -> Response:
    """The error in the shape of the API the request came in on (OpenAI's by default)."""
    path = scope.get("path", "")
    state = getattr(scope.get("app"), "state", None)
    for matches, render in getattr(state, "error_renderers", ()):
        if matches(path):
            response: Response = render(error)
            return response
    return error.response()


async def _openai_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIError)
    return render_error(request.scope, exc)


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return render_error(request.scope, _validation_error(exc.errors()))


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif status == 405:
        message = f"Method not allowed ({request.method} {request.url.path})"
    elif status == 413:
        message = "Request body too large."
    else:
        message = str(exc.detail) if exc.detail else DEFAULT_MESSAGES.get(status, "Request failed.")
    kind = SERVER_ERROR if status >= 500 else INVALID_REQUEST
    code = {413: "request_too_large", 408: "request_timeout"}.get(status)
    headers = dict(exc.headers) if exc.headers else {}
    return render_error(request.scope, OpenAIError(status, message, kind, None, code, headers))


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    # Logged without the request (it may hold a license or private prompts).
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render_error(request.scope, OpenAIError(500, DEFAULT_MESSAGES[500], SERVER_ERROR))


def install_error_handlers(app: FastAPI) -> None:
    app.state.error_renderers = []
    app.add_exception_handler(OpenAIError, _openai_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(HTTPException, _http_exception_handler)
    app.add_exception_handler(Exception, _unexpected_handler)


def payload_too_large() -> OpenAIError:
    return OpenAIError(413, "Request body too large.", code="request_too_large")


def body_too_slow() -> OpenAIError:
    return OpenAIError(408, "The request body did not arrive in time.", code="request_timeout")


def _unencodable_path(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((found for sub, item in items if (found := _unencodable_path(item, sub)) is not None), None)


def invalid_unicode(body: Any) -> OpenAIError:
    """A 400 for text JSON can spell but protobuf cannot carry: an unpaired surrogate ("\\ud800")."""
    param = _unencodable_path(body, "")
    where = f"'{param}'" if param else "the request"
    return OpenAIError(
        400, f"Invalid value for {where}: text must be valid Unicode (no unpaired surrogates).", param=param
    )
