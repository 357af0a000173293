"""Cursor's errors as the simulator sends them: Connect code, ErrorDetails enum, title, detail."""

from __future__ import annotations

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from protobuf.wkt import Any as ConnectAny

from aiserver.v1 import errors_pb2

Err = errors_pb2.ErrorDetails.Error
# error kind -> (Connect code, ErrorDetails.Error, title)
ERRORS: dict[str, tuple[Code, int, str]] = {
    "auth": (Code.UNAUTHENTICATED, Err.ERROR_NOT_LOGGED_IN, "Not logged in"),
    "expired": (Code.UNAUTHENTICATED, Err.ERROR_AUTH_TOKEN_EXPIRED, "Your session has expired"),
    "rate_limited": (Code.RESOURCE_EXHAUSTED, Err.ERROR_RATE_LIMITED, "Too many requests"),
    "usage_limit": (Code.RESOURCE_EXHAUSTED, Err.ERROR_PRO_USER_USAGE_LIMIT, "Usage limit reached"),
    "outdated": (Code.FAILED_PRECONDITION, Err.ERROR_OUTDATED_CLIENT, "Please update Cursor"),
    "bad_model": (Code.INVALID_ARGUMENT, Err.ERROR_BAD_MODEL_NAME, "Unknown model"),
    "deprecated": (Code.FAILED_PRECONDITION, Err.ERROR_DEPRECATED, "This endpoint is deprecated"),
    "internal": (Code.INTERNAL, Err.ERROR_UNSPECIFIED, "Internal server error"),
    "unavailable": (Code.UNAVAILABLE, Err.ERROR_UNSPECIFIED, "Service unavailable"),
    # What public 2026 reports show the legacy RPC answering current accounts: an enum value that
    # reads as a rate limit (28), a resource_exhausted code, and words that say the client is old.
    "update_required": (
        Code.RESOURCE_EXHAUSTED,
        Err.ERROR_GPT_4_VISION_PREVIEW_RATE_LIMIT,
        "Update Required",
    ),
    "region": (Code.RESOURCE_EXHAUSTED, Err.ERROR_UNSUPPORTED_REGION, "Model not available"),
    "model_blocked": (Code.PERMISSION_DENIED, Err.ERROR_MODEL_BLOCKED, "Model blocked"),
    "max_mode": (Code.INVALID_ARGUMENT, Err.ERROR_MAX_MODE_REQUIRED, "Max Mode Required"),
    "max_mode_required": (Code.FAILED_PRECONDITION, Err.ERROR_MAX_MODE_REQUIRED, "Max Mode Required"),
    "no_max_mode": (Code.INVALID_ARGUMENT, Err.ERROR_BAD_REQUEST, "Max mode is not available for this model"),
    "account_closed": (Code.PERMISSION_DENIED, Err.ERROR_ACCOUNT_CLOSED, "Account closed"),
    "provider": (Code.UNAVAILABLE, Err.ERROR_PROVIDER_ERROR, "Provider error"),
}

# Cursor's own wording for the details of some errors (agent-protocol.md §2.6, §7.2).
DETAILS = {
    "update_required": "Your version of Cursor no longer supports this action.",
    "region": "This model provider is not supported in your region.",
}


# What connect servers (Cursor among them) answer a request over their size limit: no details.
TOO_LARGE_MESSAGE = "message is larger than configured max 4194304"


def cursor_error(kind: str, retry_after: float = 0.0) -> ConnectError:
    if kind == "too_large":
        return ConnectError(Code.RESOURCE_EXHAUSTED, TOO_LARGE_MESSAGE)
    code, error, title = ERRORS[kind]
    details = errors_pb2.ErrorDetails(
        error=error,  # type: ignore[arg-type]
        details=errors_pb2.CustomErrorDetails(
            title=title, detail=DETAILS.get(kind, f"{title} (simulated)"), is_retryable=True
        ),
    )
    if retry_after:
        details.details.additional_info["retry_after_seconds"] = f"{retry_after:g}"
    packed = ConnectAny(
        type_url="type.googleapis.com/aiserver.v1.ErrorDetails", value=details.SerializeToString()
    )
    return ConnectError(code, title, details=[packed])
