"""The "break" fault over HTTP/2: cut the connection, as a dropped link would.

Over HTTP/1.1 an app that stops mid-response makes hypercorn close the connection. Over h2,
hypercorn 0.18 only forgets the stream: no RST_STREAM, no END_STREAM, so the client waits
forever and a break would look like a stall. This outermost wrapper gives each h2 request a
`cursorgate.cut_connection` extension that closes the TCP connection. It reaches hypercorn's
connection through the `send` it hands the app (HTTPStream.app_send -> H2Protocol.stream_send ->
the TCP server's protocol_send), which is hypercorn-internal: simulator-only, pinned by
tests/test_unit_inference.py's break tests and the every-dialect fault suite.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypercorn.events import Closed
from starlette.types import ASGIApp, Receive, Scope, Send

CUT = "cursorgate.cut_connection"


class ConnectionCut:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("http_version") == "2":
            stream: Any = getattr(send, "__self__", None)
            protocol: Any = getattr(getattr(stream, "send", None), "__self__", None)
            if protocol is not None and hasattr(protocol, "send"):

                async def cut() -> None:
                    # What the app already sent goes out first, as on a link that drops later.
                    buffer = getattr(protocol, "stream_buffers", {}).get(getattr(stream, "stream_id", None))
                    if buffer is not None:
                        await buffer.drain()
                    await asyncio.sleep(0.02)
                    await protocol.send(Closed())

                scope.setdefault("extensions", {})[CUT] = cut
        await self.app(scope, receive, send)
