"""uvicorn, configured against slow clients: a deadline for request headers, and a cap on
connections (the body deadline is the app's, in facade.limits).

uvicorn bounds only the idle time between keep-alive requests; a client that sends its headers
one byte at a time (slowloris), or never finishes them, would hold its connection forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from facade.config import FacadeSettings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection whose request headers are not complete `header_timeout` seconds after
    the connection opened, or after the request's first byte on a kept-alive connection."""

    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_for(settings: FacadeSettings) -> type[HeaderDeadlineProtocol]:
    return type("FacadeHttpProtocol", (HeaderDeadlineProtocol,), {"header_timeout": settings.header_timeout})


def server_options(settings: FacadeSettings) -> dict[str, Any]:
    """uvicorn.run's keyword arguments for the HTTP server's own limits."""
    return {
        "http": protocol_for(settings),
        # Connections (and requests) open at once; past it uvicorn answers 503 at once.
        "limit_concurrency": settings.max_connections or None,
        # Long generations stream for minutes; keep idle keep-alive connections a while too.
        "timeout_keep_alive": 75,
    }
