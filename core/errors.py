"""Typed gateway failures and how they travel as gRPC statuses (see protos/cursorgate/v1/chat.proto)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from cursorgate.v1 import errors_pb2

Code = errors_pb2.ErrorCode

_STATUS: dict[int, grpc.StatusCode] = {
    Code.ERROR_CODE_INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    Code.ERROR_CODE_REQUEST_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Code.ERROR_CODE_UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Code.ERROR_CODE_MODEL_NOT_ALLOWED: grpc.StatusCode.PERMISSION_DENIED,
    Code.ERROR_CODE_MODEL_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.ERROR_CODE_RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.ERROR_CODE_QUOTA_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.ERROR_CODE_OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.ERROR_CODE_UPSTREAM_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.ERROR_CODE_NO_ACCOUNT_AVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.ERROR_CODE_STORE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.ERROR_CODE_UPSTREAM_OUTDATED_CLIENT: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ERROR_CODE_UPSTREAM_AUTH: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ERROR_CODE_UPSTREAM_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    Code.ERROR_CODE_UPSTREAM_ERROR: grpc.StatusCode.INTERNAL,
    Code.ERROR_CODE_INTERNAL: grpc.StatusCode.INTERNAL,
    Code.ERROR_CODE_MAX_MODE_REQUIRED: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ERROR_CODE_OUTPUT_INVALID: grpc.StatusCode.INTERNAL,
    Code.ERROR_CODE_RESPONSE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
}


# A status travels in HTTP/2 trailers, which gRPC caps (8 KiB by default); a longer message would
# turn the answer into a local RESOURCE_EXHAUSTED (a 429 that SDKs retry forever).
MAX_MESSAGE = 1000


def echo(value: str, limit: int = 80) -> str:
    """A caller's value, quoted back in a message: never all of it."""
    return value if len(value) <= limit else value[:limit] + "…"


class GatewayError(Exception):
    """A failure with a typed code; its message is safe to show callers (no secrets)."""

    def __init__(
        self,
        code: errors_pb2.ErrorCode,
        message: str,
        *,
        param: str = "",
        retry_after_ms: int = 0,
        reason: str = "",
    ) -> None:
        message = message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "…"
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param[:200]
        self.retry_after_ms = retry_after_ms
        # ErrorInfo.reason: which of several causes under one code (e.g. LICENSE_RPM_EXCEEDED).
        self.reason = reason

    @property
    def status_code(self) -> grpc.StatusCode:
        return _STATUS.get(self.code, grpc.StatusCode.INTERNAL)

    def to_info(self) -> errors_pb2.ErrorInfo:
        return errors_pb2.ErrorInfo(
            code=self.code,
            message=self.message,
            param=self.param,
            retry_after_ms=self.retry_after_ms,
            reason=self.reason,
        )

    def to_status(self) -> grpc.Status:
        detail = any_pb2.Any()
        detail.Pack(self.to_info())
        status = status_pb2.Status(code=self.status_code.value[0], message=self.message, details=[detail])
        result: grpc.Status = rpc_status.to_status(status)
        return result

    def __repr__(self) -> str:
        return f"GatewayError({Code.Name(self.code)}, {self.message!r})"


def invalid(message: str, param: str = "") -> GatewayError:
    return GatewayError(Code.ERROR_CODE_INVALID_REQUEST, message, param=param)


def error_info_from_status(status: status_pb2.Status | None) -> errors_pb2.ErrorInfo | None:
    """The ErrorInfo a gateway status carries, if any (for gRPC clients of core)."""
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(errors_pb2.ErrorInfo.DESCRIPTOR):
            info = errors_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None
