"""The SSE response at the ASGI level: the core call is cancelled however the client leaves."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from cursorgate.v1 import chat_pb2
from facade.guard import ClientGone
from facade.openai_chat.convert import ChunkStream
from facade.sse import open_stream


class ScriptedCall:
    """Stands in for a grpc.aio stream call: events come from a queue; cancel() is counted."""

    def __init__(self, *events: chat_pb2.ChatEvent) -> None:
        self.events: asyncio.Queue[chat_pb2.ChatEvent] = asyncio.Queue()
        for event in events:
            self.events.put_nowait(event)
        self.cancels = 0

    async def read(self) -> chat_pb2.ChatEvent:
        return await self.events.get()

    def cancel(self) -> bool:
        self.cancels += 1
        return True


def text(value: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=value))


SCOPE: dict[str, Any] = {"type": "http", "asgi": {"spec_version": "2.3"}}


async def test_disconnect_mid_stream_runs_generator_finally() -> None:
    call = ScriptedCall(text("a"), text("b"))  # then waits forever, like a stalled upstream
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False)
    body_sent = asyncio.Event()
    sent: list[bytes] = []

    async def receive_before_response() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    response = await open_stream(call, chunks, receive_before_response, {})  # type: ignore[arg-type]

    async def receive() -> dict[str, Any]:
        await body_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])
            # "b" ends a content delta (alone, or merged with "a": core/coalesce.py).
            if b'b"}' in message["body"]:
                body_sent.set()

    await asyncio.wait_for(response(SCOPE, receive, send), 1.0)  # type: ignore[arg-type]
    assert any(b'b"}' in chunk for chunk in sent)
    # Once from the generator's finally (proves it ran on disconnect), once from on_close.
    assert call.cancels == 2


async def test_disconnect_before_first_chunk_still_cancels() -> None:
    call = ScriptedCall(text("a"))
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False)

    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    response = await open_stream(call, chunks, never, {})  # type: ignore[arg-type]

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await asyncio.Event().wait()  # the client is gone: the first send never completes

    await asyncio.wait_for(response(SCOPE, receive, send), 1.0)  # type: ignore[arg-type]
    assert call.cancels >= 1


class CancelledByGuardCall(ScriptedCall):
    """grpc.aio may report a locally cancelled call as AioRpcError(CANCELLED) from read()."""

    def __init__(self) -> None:
        super().__init__()
        self._cancelled = asyncio.Event()

    async def read(self) -> chat_pb2.ChatEvent:
        await self._cancelled.wait()
        raise grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata())

    def cancel(self) -> bool:
        self._cancelled.set()
        return super().cancel()


async def test_client_gone_before_first_event_is_not_a_core_failure() -> None:
    """The guard's own cancel coming back as CANCELLED means the client left, not a 5xx."""
    call = CancelledByGuardCall()
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(ClientGone):
        await asyncio.wait_for(open_stream(call, chunks, receive, {}), 1.0)  # type: ignore[arg-type]
    assert call.cancels == 1
