"""Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}`, for every failure
answered under the Messages routes (the shared handlers in facade/errors.py call `render`).

The gateway's errors are decided once (facade/errors.py maps core's codes to HTTP); this
module only re-spells them: Anthropic's type per status, and its statuses where they differ.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from facade.errors import OpenAIError
from facade.responses import OrjsonResponse

# https://docs.anthropic.com/en/api/errors
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# Statuses Anthropic does not use, re-spelled as the one it uses for the same case: an
# upstream failure is its api_error (500); no capacity (no account free, upstream down) is
# its overloaded_error (529), which its SDKs retry.
STATUSES: dict[int, int] = {502: 500, 503: 529}


def anthropic_status(status: int) -> int:
    return STATUSES.get(status, status)


def error_type(status: int) -> str:
    status = anthropic_status(status)
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def render(error: OpenAIError) -> Response:
    body = error_body(error_type(error.status), error.message)
    return OrjsonResponse(body, status_code=anthropic_status(error.status), headers=error.headers or None)
