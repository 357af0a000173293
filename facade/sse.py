"""Server-sent events for streamed completions, and cancelling core calls the client abandoned.

Frames are formatted by hand (`data: <json>\\n\\n`) on a plain StreamingResponse: measured
about 35% faster than fastapi.sse for token-sized chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import grpc
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cursorgate.v1 import chat_pb2
from facade.convert import ChunkStream
from facade.errors import SERVER_ERROR, OpenAIError, from_grpc_error

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"

StreamCall = grpc.aio.UnaryStreamCall[chat_pb2.ChatRequest, chat_pb2.ChatEvent]
AnyCall = grpc.aio.Call


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class DisconnectGuard:
    """While core has not answered yet, cancel its call if the HTTP client goes away.

    Used around waits that happen before any response byte is sent (the unary call, the
    first stream event): there Starlette is not yet watching for disconnects itself.
    """

    def __init__(self, receive: Receive, call: AnyCall) -> None:
        self._receive = receive
        self._call = call
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False

    async def _watch(self) -> None:
        # The body is already read, so the next message is the disconnect.
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        self._call.cancel()

    async def __aenter__(self) -> DisconnectGuard:
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


class EventStreamResponse(StreamingResponse):
    """A StreamingResponse that runs `on_close` however it ends.

    The body generator's own `finally` does not run if the client leaves before iteration
    starts; this guarantees the core call is cancelled in that case too.
    """

    media_type = "text/event-stream"

    def __init__(
        self, content: AsyncIterator[bytes], on_close: Callable[[], object], headers: dict[str, str]
    ) -> None:
        super().__init__(content, headers=headers, media_type=self.media_type)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(receive, send)
        finally:
            self._on_close()

    async def _stream(self, receive: Receive, send: Send) -> None:
        """StreamingResponse's ASGI 2.3 behaviour (stop when the client disconnects) without its
        anyio task group: one plain watcher task, which costs a fraction per request."""
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not gone or task.uncancel() > 0:
                raise  # cancelled from outside, not (only) by the watcher
        finally:
            watcher.cancel()


class ClientGone(Exception):
    """The HTTP client left while we waited for core; nothing is left to answer."""


async def open_stream(
    call: StreamCall, chunks: ChunkStream, receive: Receive, headers: dict[str, str]
) -> EventStreamResponse:
    """Wait for core's first event before committing to a 200, so a call that fails at once
    (bad license, unknown model) gets its real HTTP status and a JSON error body."""
    guard = DisconnectGuard(receive, call)
    try:
        async with guard:
            first = await call.read()
    except grpc.aio.AioRpcError as error:
        if guard.disconnected:
            raise ClientGone from None  # the guard's own cancel came back as CANCELLED
        raise from_grpc_error(error) from None
    except asyncio.CancelledError:
        if guard.disconnected:
            raise ClientGone from None
        call.cancel()
        raise
    if first is grpc.aio.EOF:
        raise OpenAIError(502, "The gateway core ended the stream without an answer.", SERVER_ERROR)
    assert isinstance(first, chat_pb2.ChatEvent)
    return EventStreamResponse(
        _frames(call, chunks, first), on_close=call.cancel, headers=headers | SSE_HEADERS
    )


async def _frames(call: StreamCall, chunks: ChunkStream, first: chat_pb2.ChatEvent) -> AsyncIterator[bytes]:
    try:
        yield frame(chunks.first())
        event: object = first
        content_frame = chunks.content_frame
        while isinstance(event, chat_pb2.ChatEvent):
            if event.WhichOneof("event") == "text":  # the hot path: one token chunk
                yield content_frame(event.text.text)
            else:
                for chunk in chunks.translate(event):
                    yield frame(chunk)
            event = await call.read()
        yield DONE
    except grpc.aio.AioRpcError as error:
        # Headers are gone: the failure travels in-band, in OpenAI's error schema.
        yield frame(from_grpc_error(error).body())
        yield DONE
    finally:
        # Runs on normal end, on error and on client disconnect (Starlette cancels us then).
        call.cancel()
