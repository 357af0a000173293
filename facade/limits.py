"""Request body size limit, as a pure ASGI middleware (no buffering, no per-request task)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facade.errors import payload_too_large, render_error


class BodyTooLarge(HTTPException):
    # An HTTPException so that FastAPI's body reader re-raises it as is (it turns other
    # exceptions into a 400) and the app's handler renders the OpenAI-style 413.
    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Request body too large.")


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes`: at once on Content-Length, else while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the server rejects malformed lengths itself
                if declared > self.max_bytes:
                    await render_error(scope, payload_too_large())(scope, receive, send)
                    return
                break

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Read outside a route (so no handler saw it): answer here if we still can.
            if started:
                raise
            await render_error(scope, payload_too_large())(scope, receive, send)
