"""The simulator's ASGI app: Connect services, the control API, and a fault-injecting middleware."""

from __future__ import annotations

from typing import Any, cast

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiserver.v1.chat_connect import ChatServiceASGIApplication
from aiserver.v1.models_connect import AiServiceASGIApplication
from simulator import control, dashboard
from simulator.config import SimulatorSettings
from simulator.legacy import SimChatService
from simulator.pacing import FAULT
from simulator.service import SimAiService

# An envelope (flag 0, length 4) whose payload is not a valid protobuf message.
GARBAGE_FRAME = b"\x00\x00\x00\x00\x04\xff\xff\xff\xff"


# Bidi RPC paths: served over HTTP/2 only. Cursor's edge answers HTTP/1.1 with 464
# (agent-protocol.md §2.4); each bidi service adds its path here.
BIDI_PATHS: set[str] = set()
HTTP1_REFUSED = 464


class _Abort(Exception):
    pass


class Http2OnlyMiddleware:
    """Refuses HTTP/1.1 on the bidi RPCs, as the real edge does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("http_version") != "2" and scope["path"] in BIDI_PATHS:
            await send({"type": "http.response.start", "status": HTTP1_REFUSED, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


class FaultMiddleware:
    """Applies what a handler asked for: an HTTP 503, a cut connection, or a corrupt frame."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fault: dict[str, Any] = {}
        FAULT.set(fault)
        replaced = False

        async def faulty_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start" and fault.get("http_status"):
                replaced = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": fault["http_status"],
                        "headers": [(b"content-type", b"text/html")],
                    }
                )
                await send({"type": "http.response.body", "body": b"<html>503 Service Unavailable</html>"})
                return
            if message["type"] == "http.response.body" and fault.get("mode") == "break":
                raise _Abort
            if message["type"] == "http.response.body" and fault.get("mode") == "malformed":
                replaced = True
                await send({"type": "http.response.body", "body": GARBAGE_FRAME})
                return
            await send(message)

        try:
            await self.app(scope, receive, faulty_send)
        except _Abort:
            return  # the server closes the connection without ending the response


def create_app(settings: SimulatorSettings | None = None) -> Starlette:
    settings = settings or SimulatorSettings()
    state = control.SimState()
    chat = ChatServiceASGIApplication(SimChatService(settings, state))
    ai = AiServiceASGIApplication(SimAiService(settings, state))
    app = Starlette(
        # cast: where asgiref is installed, connectrpc types its apps with asgiref's protocols,
        # which starlette's ASGIApp does not match structurally.
        routes=[
            *control.routes(state),
            *dashboard.routes(state),
            Mount(chat.path, cast(ASGIApp, chat)),
            Mount(ai.path, cast(ASGIApp, ai)),
        ]
    )
    app.state.sim = state
    app.add_middleware(FaultMiddleware)
    app.add_middleware(Http2OnlyMiddleware)
    return app
