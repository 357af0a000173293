"""A server interceptor: request bytes that do not parse get INVALID_ARGUMENT in our words.

grpcio would otherwise answer UNKNOWN with the protobuf decoder's own text. The request
deserializer of every method is wrapped: a decode failure yields a marker instead of raising,
and the wrapped handler answers the marker with a typed status before the service sees it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from core.errors import invalid

MALFORMED_MESSAGE = "The request message could not be parsed as the method's protobuf type."


class _Malformed:
    """Stands in for a request whose bytes did not parse."""


MALFORMED = _Malformed()
OWN_SERVICES = "/cursorgate."

Context = grpc.aio.ServicerContext[Any, Any]


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, ValueError, TypeError):
            return MALFORMED

    return parse


async def _refuse(context: Context) -> None:
    await context.abort_with_status(invalid(MALFORMED_MESSAGE).to_status())


def _guard_unary(behavior: Callable[..., Any]) -> Callable[[Any, Context], Awaitable[Any]]:
    async def unary(request: Any, context: Context) -> Any:
        if request is MALFORMED:
            await _refuse(context)
        return await behavior(request, context)

    return unary


def _guard_stream(
    behavior: Callable[..., AsyncIterator[Any]],
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        if request is MALFORMED:
            await _refuse(context)
        async for item in behavior(request, context):
            yield item

    return stream


class MalformedRequestGuard(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        # Only request-unary methods of our own services: health and reflection are grpcio's.
        method = handler_call_details.method or ""
        if (
            handler is None
            or not method.startswith(OWN_SERVICES)
            or handler.request_streaming
            or handler.request_deserializer is None
        ):
            return handler
        if handler.unary_unary is not None:
            return handler._replace(  # type: ignore[attr-defined,no-any-return]
                request_deserializer=_safe(handler.request_deserializer),
                unary_unary=_guard_unary(handler.unary_unary),
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return handler._replace(  # type: ignore[attr-defined,no-any-return]
                request_deserializer=_safe(handler.request_deserializer),
                unary_stream=_guard_stream(handler.unary_stream),
            )
        return handler
