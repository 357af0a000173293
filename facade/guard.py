"""Awaiting core while the HTTP client may leave: cancel core's call if it does.

The one place that handles the race between a client disconnect, core's answer and the
request task's own cancellation; every API surface awaits core through `await_core`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

import grpc
from starlette.types import Receive

from facade.errors import from_grpc_error

T = TypeVar("T")
AnyCall = grpc.aio.Call

# nginx's "client closed request": never seen by anyone, but keeps access logs honest.
CLIENT_CLOSED = 499


class ClientGone(Exception):
    """The HTTP client left while we waited for core; nothing is left to answer."""


class DisconnectGuard:
    """While core has not answered yet, cancel its call if the HTTP client goes away.

    Used around waits that happen before any response byte is sent (the unary call, the
    first stream event): there Starlette is not yet watching for disconnects itself.
    """

    def __init__(self, receive: Receive, call: AnyCall) -> None:
        self._receive = receive
        self._call = call
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False

    async def _watch(self) -> None:
        # The body is already read, so the next message is the disconnect.
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        self._call.cancel()

    async def __aenter__(self) -> DisconnectGuard:
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


async def await_core(receive: Receive, call: AnyCall, answer: Awaitable[T]) -> T:
    """Await `answer` (the call itself, or its first read) under a DisconnectGuard.

    Raises ClientGone when the client left (the guard's own cancel comes back as CANCELLED),
    the HTTP error of a failed call (`from_grpc_error`), and cancels the call if the request
    task itself is cancelled. Unsafe for waits after the response has started: Starlette
    then owns the receive channel.
    """
    guard = DisconnectGuard(receive, call)
    try:
        async with guard:
            return await answer
    except grpc.aio.AioRpcError as error:
        if guard.disconnected:
            raise ClientGone from None
        raise from_grpc_error(error) from None
    except asyncio.CancelledError:
        if guard.disconnected:
            raise ClientGone from None
        call.cancel()
        raise
