"""Server-sent events for streamed answers of every API surface, and cancelling core calls
the client abandoned.

Each surface supplies a `StreamTranslator` that turns core's ChatEvents into its own SSE
bytes; this module owns the I/O: waiting for the first event, the stream's lifetime, and
cancelling core's call however the stream ends. Frames are formatted by hand
(`data: <json>\\n\\n`) on a plain StreamingResponse: measured about 35% faster than
fastapi.sse for token-sized chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import grpc
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cursorgate.v1 import chat_pb2
from facade.errors import SERVER_ERROR, OpenAIError, from_grpc_error
from facade.guard import await_core

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

StreamCall = grpc.aio.UnaryStreamCall[chat_pb2.ChatRequest, chat_pb2.ChatEvent]


def frame(payload: Mapping[str, Any]) -> bytes:
    """A data-only SSE frame (OpenAI's streams)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_frame(event: bytes, payload: Mapping[str, Any]) -> bytes:
    """An SSE frame with an event name (Anthropic's and the Responses API's streams)."""
    return b"event: " + event + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamTranslator(Protocol):
    """One stream's ChatEvents -> SSE bytes. Each method returns zero or more whole frames
    (b"" for none); `text` is the hot path, called for every text token. `start` gets core's
    first event (it is then passed to `text`/`event` as usual), since some openings depend on it."""

    def start(self, first: chat_pb2.ChatEvent) -> bytes: ...

    def text(self, text: str) -> bytes: ...

    def event(self, event: chat_pb2.ChatEvent) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, error: OpenAIError) -> bytes: ...


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


async def open_stream(
    call: StreamCall, translator: StreamTranslator, receive: Receive, headers: dict[str, str]
) -> EventStreamResponse:
    """Wait for core's first event before committing to a 200, so a call that fails at once
    (bad license, unknown model) gets its real HTTP status and an error body.

    Raises `facade.guard.ClientGone` when the client left while waiting.
    """
    first = await await_core(receive, call, call.read())
    if first is grpc.aio.EOF:
        raise OpenAIError(502, "The gateway core ended the stream without an answer.", SERVER_ERROR)
    assert isinstance(first, chat_pb2.ChatEvent)
    return EventStreamResponse(
        _frames(call, translator, first), on_close=call.cancel, headers=headers | SSE_HEADERS
    )


async def _frames(
    call: StreamCall, translator: StreamTranslator, first: chat_pb2.ChatEvent
) -> AsyncIterator[bytes]:
    try:
        if opening := translator.start(first):
            yield opening
        event: object = first
        text = translator.text
        while isinstance(event, chat_pb2.ChatEvent):
            if event.WhichOneof("event") == "text":  # the hot path: one token
                yield text(event.text.text)
            elif frames := translator.event(event):
                yield frames
            event = await call.read()
        yield translator.end()
    except grpc.aio.AioRpcError as error:
        # Headers are gone: the failure travels in-band, in the surface's own error schema.
        yield translator.error(from_grpc_error(error))
    finally:
        # Runs on normal end, on error and on client disconnect (Starlette cancels us then).
        call.cancel()
