"""Coalescing of a ChatEvent stream when its consumer falls behind its producer: adjacent text
(or reasoning) deltas leave as one event, tool-call argument fragments of one call as one.

A pump task reads the source into a buffer while the consumer is busy (a gRPC write, an SSE
send); the consumer takes whatever is buffered, merged. There is no timer: when the consumer
waits, it is woken by the very next event, so a lone delta is never delayed. Content and order
are kept exactly: only neighbours of the same kind merge (a tool call's argument fragments join
the delta that opened the call, which keeps its id and name), and usage or finish events always
stay events of their own. Used by core (upstream -> gRPC) and by the
facade (gRPC -> SSE).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator

from cursorgate.v1 import chat_pb2

ChatEvent = chat_pb2.ChatEvent

# The pump stops reading (leaving backpressure to the source) once this much text is waiting:
# a slow reader holds at most this much per stream in core and again in the facade.
MAX_PENDING_CHARS = 32 * 1024
# ... or this many unmerged events (usage, finish, separate tool calls).
MAX_PENDING_EVENTS = 1024


class _Run:
    """Deltas of one kind (and for tool calls one index) waiting to leave as one event."""

    __slots__ = ("first", "kind", "parts")

    def __init__(self, kind: str, first: ChatEvent, text: str) -> None:
        self.kind = kind
        self.first = first
        self.parts = [text]

    def event(self) -> ChatEvent:
        if len(self.parts) == 1:
            return self.first  # nothing merged: the event as it came, no copy
        joined = "".join(self.parts)
        if self.kind == "text":
            return ChatEvent(text=chat_pb2.TextDelta(text=joined))
        if self.kind == "reasoning":
            return ChatEvent(reasoning=chat_pb2.ReasoningDelta(text=joined))
        call = self.first.tool_call
        delta = chat_pb2.ToolCallDelta(index=call.index, id=call.id, name=call.name, arguments=joined)
        return ChatEvent(tool_call=delta)


def _mergeable(kind: str | None, event: ChatEvent) -> tuple[str, str] | None:
    """(run key, text) for an event that can join a run, else None."""
    if kind == "text":
        return "text", event.text.text
    if kind == "reasoning":
        return "reasoning", event.reasoning.text
    if kind == "tool_call":
        return f"tool_call:{event.tool_call.index}", event.tool_call.arguments
    return None


class _Pump:
    """Reads `source` in its own task into `pending`, merging as it goes."""

    def __init__(self, source: AsyncIterator[ChatEvent]) -> None:
        self._source = source
        self.pending: deque[_Run | ChatEvent] = deque()
        self._last_key: str | None = None
        self.chars = 0
        self.finished = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    def _add(self, event: ChatEvent) -> None:
        kind = event.WhichOneof("event")
        merge = _mergeable(kind, event)
        if merge is None:
            self.pending.append(event)
            self._last_key = None
            return
        key, text = merge
        self.chars += len(text)
        # A tool call's later fragments carry only arguments; a fragment with an id or a name
        # starts a new call (or restates one) and stays its own event.
        if key == self._last_key and (
            kind != "tool_call" or not (event.tool_call.id or event.tool_call.name)
        ):
            last = self.pending[-1]
            assert isinstance(last, _Run)
            last.parts.append(text)
            return
        self.pending.append(_Run(kind or "", event, text))
        self._last_key = key

    async def _run(self) -> None:
        try:
            async with contextlib.aclosing(self._source):  # type: ignore[type-var]
                async for event in self._source:
                    self._add(event)
                    self._wake()
                    if self.chars >= MAX_PENDING_CHARS or len(self.pending) >= MAX_PENDING_EVENTS:
                        self._room = asyncio.get_running_loop().create_future()
                        await self._room
        except BaseException as error:  # handed to the consumer, in order, after what came before
            self.error = error
        finally:
            self.finished = True
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> list[ChatEvent]:
        """Everything buffered (merged), waiting for the next event if there is none yet; [] at the end."""
        while not self.pending and not self.finished:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        self._waiter = None
        batch = [item.event() if isinstance(item, _Run) else item for item in self.pending]
        self.pending.clear()
        self._last_key = None
        self.chars = 0
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        if not batch and self.error is not None:
            error, self.error = self.error, None
            raise error
        return batch

    async def aclose(self) -> None:
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def coalesced(source: AsyncIterator[ChatEvent]) -> AsyncGenerator[ChatEvent, None]:
    """`source`'s events, with whatever piled up while the caller was busy merged; closing this
    closes `source` (its task is cancelled, so an upstream call is cancelled with it)."""
    pump = _Pump(source)
    try:
        while batch := await pump.take():
            for event in batch:
                yield event
    finally:
        await pump.aclose()


async def batches(source: AsyncIterator[ChatEvent]) -> AsyncGenerator[list[ChatEvent], None]:
    """As `coalesced`, a batch at a time: what was waiting together, so it can leave as one write."""
    pump = _Pump(source)
    try:
        while batch := await pump.take():
            yield batch
    finally:
        await pump.aclose()
