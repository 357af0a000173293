"""The simulator's ASGI app: Connect services, the control API, and a fault-injecting middleware."""

from __future__ import annotations

import contextlib
from typing import Any, cast

from hypercorn.events import Closed
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.v1.agent_connect import AgentServiceASGIApplication
from aiserver.v1.chat_connect import ChatServiceASGIApplication
from aiserver.v1.inference_connect import InferenceServiceASGIApplication
from aiserver.v1.models_connect import AiServiceASGIApplication
from simulator import auth, control, dashboard
from simulator.agent import SimAgentService
from simulator.config import SimulatorSettings
from simulator.h2cut import CUT
from simulator.inference import SimInferenceService
from simulator.legacy import SimChatService
from simulator.pacing import FAULT
from simulator.service import SimAiService

# An envelope (flag 0, length 4) whose payload is not a valid protobuf message.
GARBAGE_FRAME = b"\x00\x00\x00\x00\x04\xff\xff\xff\xff"


# Bidi RPC paths: served over HTTP/2 only. Cursor's edge answers HTTP/1.1 with 464
# (agent-protocol.md §2.4); each bidi service adds its path here.
BIDI_PATHS: set[str] = set()
BIDI_PATHS.add("/agent.v1.AgentService/Run")
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
                cut = scope.get("extensions", {}).get(CUT)  # h2: see simulator/h2cut.py
                if cut is not None:
                    await cut()
                raise _Abort
            if message["type"] == "http.response.body" and fault.get("mode") == "malformed":
                replaced = True
                await send({"type": "http.response.body", "body": GARBAGE_FRAME})
                return
            await send(message)

        try:
            await self.app(scope, receive, faulty_send)
        except _Abort:
            # The server closes the connection without ending the response; on HTTP/2 that is a
            # reset of the stream, or the client would wait on it (bidi RPCs).
            if scope.get("http_version") == "2":
                await _reset_h2_stream(send)


async def _reset_h2_stream(send: Send) -> None:
    """Cuts the HTTP/2 connection under this request, through hypercorn's objects behind the ASGI
    `send` (hypercorn has no ASGI way to abort; returning early leaves the stream open). Starlette's
    outer middleware wraps `send` in closures, which are unwrapped first."""
    stream = _hypercorn_stream(send)
    protocol = getattr(getattr(stream, "send", None), "__self__", None)
    if protocol is None or not hasattr(protocol, "connection"):
        return
    with contextlib.suppress(Exception):
        await protocol.send(Closed())


def _hypercorn_stream(send: Any, depth: int = 4) -> Any:
    owner = getattr(send, "__self__", None)
    if owner is not None and hasattr(owner, "stream_id"):
        return owner
    for cell in getattr(send, "__closure__", None) or ():
        inner = cell.cell_contents
        if depth and callable(inner):
            found = _hypercorn_stream(inner, depth - 1)
            if found is not None:
                return found
    return None


def create_app(settings: SimulatorSettings | None = None) -> Starlette:
    settings = settings or SimulatorSettings()
    state = control.SimState()
    chat = ChatServiceASGIApplication(SimChatService(settings, state))
    ai = AiServiceASGIApplication(SimAiService(settings, state))
    # Whole messages are read, and Cursor's 4 MiB limit applied by the service itself.
    inference = InferenceServiceASGIApplication(
        SimInferenceService(settings, state), read_max_bytes=64 * 1024 * 1024
    )
    BIDI_PATHS.add(f"{inference.path}/RunInference")
    app = Starlette(
        # cast: where asgiref is installed, connectrpc types its apps with asgiref's protocols,
        # which starlette's ASGIApp does not match structurally.
        routes=[
            *control.routes(state),
            *dashboard.routes(state),
            *auth.routes(settings, auth.AuthState()),
            Mount(chat.path, cast(ASGIApp, chat)),
            Mount(ai.path, cast(ASGIApp, ai)),
        ]
    )
    app.mount(inference.path, inference)
    # The Run reads whole messages and applies Cursor's 4 MiB limit itself: a server that stops
    # reading mid-message leaves hypercorn's HTTP/2 stream half-read (see simulator/agent.py).
    agent = AgentServiceASGIApplication(SimAgentService(settings, state), read_max_bytes=64 * 1024 * 1024)
    app.routes.append(Mount(agent.path, agent))
    app.state.sim = state
    app.add_middleware(FaultMiddleware)
    app.add_middleware(Http2OnlyMiddleware)
    return app
