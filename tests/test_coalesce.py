"""core/chat/coalesce.py: what piles up while the consumer is busy leaves merged, content and order
kept; a lone event is passed on at once. By construction (events and gates), never by timing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from core.chat.coalesce import MAX_PENDING_CHARS, batches, coalesced
from cursorgate.v1 import chat_pb2

ChatEvent = chat_pb2.ChatEvent


def text(t: str) -> ChatEvent:
    return ChatEvent(text=chat_pb2.TextDelta(text=t))


def thinking(t: str) -> ChatEvent:
    return ChatEvent(reasoning=chat_pb2.ReasoningDelta(text=t))


def call(index: int, args: str, id_: str = "", name: str = "") -> ChatEvent:
    return ChatEvent(tool_call=chat_pb2.ToolCallDelta(index=index, id=id_, name=name, arguments=args))


USAGE = ChatEvent(usage=chat_pb2.Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7))
FINISH = ChatEvent(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP))


async def burst(events: list[ChatEvent]) -> AsyncIterator[ChatEvent]:
    """All events ready at once, as when one network read holds many frames."""
    for event in events:
        yield event


def payload(e: ChatEvent) -> str:
    kind = e.WhichOneof("event")
    if kind == "text":
        return e.text.text
    if kind == "reasoning":
        return e.reasoning.text
    if kind == "tool_call":
        c = e.tool_call
        return f"{c.index}|{c.id}|{c.name}|{c.arguments}"
    return str(e)


def described(events: list[ChatEvent]) -> list[tuple[str, str]]:
    """(kind, payload) per event, to compare streams whatever their batching."""
    return [(e.WhichOneof("event") or "", payload(e)) for e in events]


def flattened(events: list[ChatEvent]) -> list[tuple[str, str]]:
    """Adjacent deltas of one kind joined: equal for any batching that keeps content and order."""
    out: list[tuple[str, str]] = []
    for kind, payload in described(events):
        if out and kind in ("text", "reasoning") and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + payload)
        else:
            out.append((kind, payload))
    return out


async def collect(source: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in coalesced(source)]


def test_a_burst_merges_and_keeps_content_and_order() -> None:
    events = [
        thinking("Let "),
        thinking("me think."),
        text("Hel"),
        text("lo, "),
        text("world"),
        call(0, "", id_="call_a", name="get_weather"),
        call(0, '{"city"'),
        call(0, ': "Paris"}'),
        call(1, "", id_="call_b", name="get_time"),
        call(1, "{}"),
        text("!"),
        USAGE,
        FINISH,
    ]
    out = asyncio.run(collect(burst(events)))
    # Written out independently of the code: what one merged delivery must look like.
    assert described(out) == [
        ("reasoning", "Let me think."),
        ("text", "Hello, world"),
        # A call's fragments join its first delta, which keeps the call's id and name.
        ("tool_call", '0|call_a|get_weather|{"city": "Paris"}'),
        ("tool_call", "1|call_b|get_time|{}"),
        ("text", "!"),
        ("usage", str(USAGE)),
        ("finish", str(FINISH)),
    ]
    assert len(out) < len(events)


def test_under_backpressure_fewer_frames_than_deltas_same_text() -> None:
    """The consumer is held at its first event while the producer writes 500 deltas; after the
    gate opens everything that piled up comes as one event."""

    async def scenario() -> tuple[list[ChatEvent], int]:
        produced = asyncio.Event()
        release = asyncio.Event()
        deltas = [text(f"<{i}>") for i in range(500)]

        async def producer() -> AsyncIterator[ChatEvent]:
            for i, delta in enumerate(deltas):
                yield delta
                if i % 7 == 0:
                    await asyncio.sleep(0)  # the producer really yields to the loop in between
            produced.set()
            yield FINISH

        out: list[ChatEvent] = []
        stream = coalesced(producer())
        async with contextlib.aclosing(stream):
            async for event in stream:
                out.append(event)
                if len(out) == 1:  # a slow consumer: busy until everything is produced
                    await produced.wait()
                    release.set()
        return out, len(deltas)

    out, deltas = asyncio.run(scenario())
    texts = [e.text.text for e in out if e.WhichOneof("event") == "text"]
    assert "".join(texts) == "".join(f"<{i}>" for i in range(500))
    assert len(texts) < deltas
    assert len(texts) <= 3  # the first delta alone, then what piled up in (at most) two
    assert out[-1].WhichOneof("event") == "finish"


def test_a_lone_delta_is_delivered_before_the_next_is_produced() -> None:
    """No batching window: each event reaches the consumer while the producer waits for it."""

    async def scenario() -> list[str]:
        seen: list[str] = []
        turn = [asyncio.Event() for _ in range(5)]

        async def producer() -> AsyncIterator[ChatEvent]:
            for i in range(5):
                yield text(str(i))
                await turn[i].wait()  # the next delta only after the consumer has this one

        async for event in coalesced(producer()):
            seen.append(event.text.text)
            turn[len(seen) - 1].set()
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == ["0", "1", "2", "3", "4"]


def test_an_error_comes_after_what_was_produced_before_it() -> None:
    class Boom(Exception):
        pass

    async def producer() -> AsyncIterator[ChatEvent]:
        yield text("a")
        yield text("b")
        raise Boom("upstream failed")

    seen: list[str] = []

    async def scenario() -> None:
        async for event in coalesced(producer()):
            seen.append(event.text.text)

    with pytest.raises(Boom):
        asyncio.run(scenario())
    assert "".join(seen) == "ab"


def test_closing_the_consumer_closes_the_source() -> None:
    async def scenario() -> bool:
        closed = asyncio.Event()

        async def producer() -> AsyncIterator[ChatEvent]:
            try:
                yield text("a")
                await asyncio.Event().wait()  # an upstream that never ends
            finally:
                closed.set()

        stream = coalesced(producer())
        async with contextlib.aclosing(stream):
            async for _ in stream:
                break
        return closed.is_set()

    assert asyncio.run(scenario())


def test_a_cancelled_consumer_cancels_the_source() -> None:
    async def scenario() -> bool:
        cancelled = asyncio.Event()
        started = asyncio.Event()

        async def producer() -> AsyncIterator[ChatEvent]:
            try:
                yield text("a")
                started.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def consume() -> None:
            async for _ in coalesced(producer()):
                pass

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return cancelled.is_set()

    assert asyncio.run(scenario())


def test_the_pump_stops_reading_when_too_much_waits() -> None:
    """Bounded memory: with the consumer held, the producer is not drained past the limit."""

    async def scenario() -> tuple[int, int]:
        size = 1024
        produced = 0
        hold = asyncio.Event()

        async def producer() -> AsyncIterator[ChatEvent]:
            nonlocal produced
            for _ in range(10 * MAX_PENDING_CHARS // size):
                produced += 1
                yield text("x" * size)

        got = 0
        stream = batches(producer())
        async with contextlib.aclosing(stream):
            async for batch in stream:
                got += sum(len(e.text.text) for e in batch)
                if not hold.is_set():
                    for _ in range(50):  # let the producer run as far as it may
                        await asyncio.sleep(0)
                    at_hold = produced
                    hold.set()
        return at_hold, got

    at_hold, got = asyncio.run(scenario())
    # What the consumer took before it stalled, plus at most one full buffer: not all ten.
    assert at_hold * 1024 <= 2 * MAX_PENDING_CHARS + 2 * 1024
    assert got == 10 * MAX_PENDING_CHARS


def test_flattened_content_is_the_same_for_any_interleaving() -> None:
    """Random-ish mixes of kinds: the coalesced stream equals the source once runs are joined."""
    kinds = [text("t1"), thinking("r1"), text("t2"), text("t3"), thinking("r2"), thinking("r3"), USAGE]
    events = [kinds[(i * 5 + i // 3) % len(kinds)] for i in range(200)] + [FINISH]
    out = asyncio.run(collect(burst(events)))
    assert flattened(out) == flattened(events)
    assert len(out) < len(events)
