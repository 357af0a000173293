"""Graceful restarts of core: counting chat calls in flight, and refusing new ones once draining.

`Core.stop` closes the gate after health goes NOT_SERVING, waits for the calls in flight (up to
CURSORGATE_DRAIN_TIMEOUT), then stops the gRPC server, which cancels what is left.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import grpc

# No ErrorInfo on purpose: the facade answers a bare UNAVAILABLE as a retryable 503.
DRAINING_MESSAGE: Final = "This gateway core is restarting and takes no new calls; retry."


class CallGate:
    """Counts calls from `admit` until gRPC reports them done, whatever the way they end."""

    def __init__(self) -> None:
        self.closed = False
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    async def admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Called first thing in an RPC: aborts it with UNAVAILABLE while draining."""
        if self.closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING_MESSAGE)
        self.in_flight += 1
        context.add_done_callback(self._done)  # type: ignore[arg-type]  # stubs want a class, not a function

    def _done(self, _: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until no call is in flight (bound it with `asyncio.timeout`)."""
        if self.in_flight == 0:
            return
        self._idle = asyncio.Event()
        await self._idle.wait()
