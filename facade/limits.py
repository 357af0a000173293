"""Request body size limit and body deadline, as a pure ASGI middleware (no buffering, no
per-request task)."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facade.errors import body_too_slow, payload_too_large


class BodyTooLarge(HTTPException):
    # An HTTPException so that FastAPI's body reader re-raises it as is (it turns other
    # exceptions into a 400) and the app's handler renders the OpenAI-style 413.
    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Request body too large.")


class BodyTooSlow(HTTPException):
    # Slowloris on the body: it did not arrive whole within the body deadline.
    def __init__(self) -> None:
        super().__init__(status_code=408, detail="The request body did not arrive in time.")


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes`: at once on Content-Length, else while they stream in;
    and bodies not complete `body_timeout` seconds after the app first reads them (408)."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

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
                    await payload_too_large().response()(scope, receive, send)
                    return
                break

        received = 0
        started = False
        body_done = False
        deadline: float | None = None

        async def limited_receive() -> Message:
            nonlocal received, body_done, deadline
            if body_done:
                return await receive()  # waiting for a disconnect: no deadline
            if self.body_timeout is not None:
                loop = asyncio.get_running_loop()
                deadline = deadline or loop.time() + self.body_timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise BodyTooSlow from None
            else:
                message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow) as exc:
            # Read outside a route (so no handler saw it): answer here if we still can.
            if started:
                raise
            answer = payload_too_large() if isinstance(exc, BodyTooLarge) else body_too_slow()
            await answer.response()(scope, receive, send)
