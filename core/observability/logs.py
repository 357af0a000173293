"""Log setup for every process of the gateway: plain text (the default) or JSON lines
(`CURSORGATE_LOG_FORMAT=json`), where each line carries the request id it was logged under.

The request id lives in a ContextVar: the facade sets it where it settles a request's id
(`facade.core_client.request_id_from`), core from the `x-request-id` metadata the facade forwards
(`RequestIdInterceptor`). Both layers import this module, as they share one wheel.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final, Literal

import grpc
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# JSON keys, in this order; request_id is added by RequestIdFilter (null outside a request).
JSON_FIELDS: Final = ("asctime", "levelname", "name", "message", "request_id")
JSON_RENAMES: Final = {"asctime": "time", "levelname": "level", "name": "logger"}

REQUEST_ID: ContextVar[str | None] = ContextVar("cursorgate_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record the handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def configure_logging(level: str, log_format: LogFormat) -> None:
    """The root handler on stderr; uvicorn's and grpc's loggers propagate to it."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                list(JSON_FIELDS), rename_fields=dict(JSON_RENAMES), timestamp=False, json_ensure_ascii=False
            )
        )
        handler.addFilter(RequestIdFilter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


# A string: grpc's classes are generic only in its type stubs.
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]


class RequestIdInterceptor(grpc.aio.ServerInterceptor):
    """Sets REQUEST_ID from the call's `x-request-id` metadata. Interceptors run in the RPC's own
    task before its handler, so the id holds for everything the handler logs."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        metadata: Any = handler_call_details.invocation_metadata or ()
        for key, value in metadata:
            if key == "x-request-id":
                REQUEST_ID.set(value if isinstance(value, str) else value.decode())
                break
        return await continuation(handler_call_details)
