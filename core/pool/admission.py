"""Admission control: how many chat calls one core serves upstream at once, and how many may wait.

Past `limit` a call waits in a bounded FIFO queue for at most `queue_timeout` seconds; with the
queue full, or once its wait is over, it is refused at once with ERROR_CODE_OVERLOADED
(gRPC RESOURCE_EXHAUSTED, `retry_after_ms` set; the facade answers 503 with Retry-After), before
any upstream work. A gateway past its capacity thus serves everyone more slowly up to the queue,
and refuses the rest early and cleanly, never at random mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator

from core.errors import Code, GatewayError


def overloaded(what: str, retry_after_s: float) -> GatewayError:
    return GatewayError(
        Code.ERROR_CODE_OVERLOADED,
        f"The gateway is at capacity ({what}); retry shortly.",
        retry_after_ms=max(1000, math.ceil(retry_after_s * 1000)),
    )


class Admission:
    """Concurrency slots with a bounded wait queue; `limit` 0 admits everything."""

    def __init__(self, limit: int, queue: int, queue_timeout: float) -> None:
        self.limit = limit
        self.queue = queue
        self.queue_timeout = queue_timeout
        self.active = 0
        self.refused = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _refuse(self) -> GatewayError:
        self.refused += 1
        return overloaded(f"{self.limit} concurrent streams", max(1.0, self.queue_timeout))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.limit <= 0:
            yield
            return
        if self.active < self.limit and not self._waiters:
            self.active += 1
        else:
            if len(self._waiters) >= self.queue:
                raise self._refuse()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                # The slot is handed over by `_release` (active is not decremented in between).
                await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout)
            except TimeoutError:
                if waiter.done():  # handed over just as the wait ran out: take it
                    pass
                else:
                    self._waiters.remove(waiter)
                    waiter.cancel()
                    raise self._refuse() from None
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # a slot handed to a caller that left: pass it on
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the next in line
                return
        self.active -= 1
