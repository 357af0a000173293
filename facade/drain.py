"""Graceful restarts of the facade: readiness, refusing new requests while draining, and knowing
when the requests in flight are done. `facade/__main__.py` starts the drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from facade.errors import SERVER_ERROR, OpenAIError
from facade.responses import OrjsonResponse

log = logging.getLogger("cursorgate.facade")

# Always answered, draining or not: the probes and the scraper must see the drain.
EXEMPT_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
# Seconds a refused caller should wait: another replica is usually ready at once.
RETRY_AFTER_S: Final = 1
DRAINING_MESSAGE: Final = "The gateway is restarting and takes no new requests here; retry the request."


class Drain:
    """Whether this process is draining, and how many requests are in flight."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until no request is in flight (bound it with `asyncio.timeout`)."""
        if self.in_flight == 0:
            return
        self._idle = asyncio.Event()
        await self._idle.wait()


def draining_response(path: str) -> Response:
    """503 + Retry-After in the shape of the API the request came in on; `Connection: close` so
    a keep-alive client reconnects, through its load balancer, to a replica that is not leaving."""
    headers = {"Retry-After": str(RETRY_AFTER_S), "Connection": "close"}
    if path.endswith("/messages"):  # Anthropic Messages
        body = {"type": "error", "error": {"type": "overloaded_error", "message": DRAINING_MESSAGE}}
        return OrjsonResponse(body, status_code=503, headers=headers)
    error = OpenAIError(503, DRAINING_MESSAGE, SERVER_ERROR, code="draining", headers=headers)
    return error.response()


class DrainMiddleware:
    """Counts requests in flight; while draining, refuses new ones before reading them."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        drain = self.drain
        if drain.draining:
            await draining_response(scope["path"])(scope, receive, send)
            return
        drain.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            drain.leave()


readiness_router = APIRouter()


@readiness_router.get("/readyz", response_model=None, summary="Readiness: 503 while the process drains")
async def readyz(request: Request) -> Response:
    drain: Drain = request.app.state.drain
    if drain.draining:
        return OrjsonResponse({"status": "draining"}, status_code=503)
    return OrjsonResponse({"status": "ready"})
