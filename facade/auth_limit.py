"""Failed-authentication limiting per client address, as a pure ASGI middleware.

Every answer of 401 to a request that carried an Authorization header counts as a failed
attempt of that client address. After `limit` failures within `window` seconds, the address's
requests with credentials get 429 and Retry-After until `lockout` seconds have passed. Successes
do not reset the count: a caller holding one valid license must not be able to interleave
successes with guesses at the admin key.

The counts live behind `FailureLimiter`; `MemoryFailureLimiter` keeps them in this process (one
replica). A shared store (Redis) can implement the same two methods for several replicas.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facade.errors import OpenAIError

log = logging.getLogger("facade.auth")


class FailureLimiter(Protocol):
    async def blocked_for(self, client: str) -> float:
        """Seconds the client must still wait (0: not blocked)."""
        ...

    async def failed(self, client: str) -> int:
        """Records one failed attempt; returns the client's failures in the current window."""
        ...


class MemoryFailureLimiter:
    """Sliding window of failure times per address, bounded in addresses kept (oldest evicted)."""

    def __init__(self, limit: int, window: float, lockout: float, max_clients: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked_until: dict[str, float] = {}

    async def blocked_for(self, client: str) -> float:
        until = self._blocked_until.get(client)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked_until[client]
            return 0.0
        return left

    async def failed(self, client: str) -> int:
        now = time.monotonic()
        times = self._failures.pop(client, None) or deque(maxlen=self.limit)
        times.append(now)
        while times and times[0] < now - self.window:
            times.popleft()
        self._failures[client] = times  # most recent last
        if len(times) >= self.limit:
            self._blocked_until[client] = now + self.lockout
        while len(self._failures) > self.max_clients:
            old, _ = self._failures.popitem(last=False)
            self._blocked_until.pop(old, None)
        return len(times)


def too_many_failures(retry_after: float) -> OpenAIError:
    return OpenAIError(
        429,
        "Too many failed authentication attempts from this address; retry later.",
        type="rate_limit_error",
        code="too_many_failed_attempts",
        headers={"Retry-After": str(max(1, round(retry_after)))},
    )


class AuthFailureLimitMiddleware:
    """Counts 401 answers per client address; refuses credentials from addresses over the limit."""

    def __init__(self, app: ASGIApp, limiter: FailureLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(name == b"authorization" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait = await self.limiter.blocked_for(client)
        if wait > 0:
            await too_many_failures(wait).response()(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                count = await self.limiter.failed(client)
                # The address and the path, never the credential.
                log.warning(
                    "authentication failed from %s on %s %s (%d in the window)",
                    client,
                    scope.get("method", "-"),
                    scope.get("path", "-"),
                    count,
                )
                # The failure that started a lockout is logged as such; the refusals during it
                # are not logged, so a flood of guesses cannot flood the log.
                if (locked := await self.limiter.blocked_for(client)) > 0:
                    log.warning(
                        "%s locked out for %.0f s after %d failed authentications", client, locked, count
                    )
            await send(message)

        await self.app(scope, receive, counting_send)
