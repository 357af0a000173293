"""Waiting on core while the HTTP client may leave: the one place that knows the race.

Before any response byte is sent, Starlette does not watch for disconnects, so `DisconnectGuard`
cancels the core call when the client goes; the call's CANCELLED error (or our own
cancellation) then means "client gone", not a failure. Shared by every API surface.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import grpc
from starlette.types import Receive

from cursorgate.v1 import chat_pb2
from facade.errors import SERVER_ERROR, OpenAIError, from_grpc_error
from facade.sse import ClientGone, DisconnectGuard, StreamCall

T = TypeVar("T")


async def await_unary(call: grpc.aio.UnaryUnaryCall[Any, T], receive: Receive) -> T:
    """The unary call's answer; raises ClientGone, or the call's failure as an OpenAIError."""
    guard = DisconnectGuard(receive, call)
    try:
        async with guard:
            return await call
    except grpc.aio.AioRpcError as error:
        if guard.disconnected:
            raise ClientGone from None  # the guard's own cancel, not a failure
        raise from_grpc_error(error) from None
    except asyncio.CancelledError:
        if guard.disconnected:
            raise ClientGone from None
        call.cancel()
        raise


async def first_event(call: StreamCall, receive: Receive) -> chat_pb2.ChatEvent:
    """Core's first stream event, so a call that fails at once gets its real HTTP status."""
    guard = DisconnectGuard(receive, call)
    try:
        async with guard:
            first = await call.read()
    except grpc.aio.AioRpcError as error:
        if guard.disconnected:
            raise ClientGone from None
        raise from_grpc_error(error) from None
    except asyncio.CancelledError:
        if guard.disconnected:
            raise ClientGone from None
        call.cancel()
        raise
    if first is grpc.aio.EOF:
        raise OpenAIError(502, "The gateway core ended the stream without an answer.", SERVER_ERROR)
    assert isinstance(first, chat_pb2.ChatEvent)
    return first
