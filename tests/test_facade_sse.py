"""The SSE response at the ASGI level: the core call is cancelled however the client leaves."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from cursorgate.v1 import chat_pb2
from facade.errors import OpenAIError
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
            # "b" ends a content delta (alone, or merged with "a": core/chat/coalesce.py).
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


# --- unit tests of facade/sse.py with hand-written frames (mutation testing: tests/mutate.py) ---


class Recorder:
    """A StreamTranslator whose frames are literal markers, so each output byte is traceable."""

    def __init__(self, opening: bytes = b"<start>") -> None:
        self.opening = opening
        self.errors: list[OpenAIError] = []

    def start(self, first: chat_pb2.ChatEvent) -> bytes:
        self.first = first
        return self.opening

    def text(self, value: str) -> bytes:
        return b"<t:" + value.encode() + b">"

    def event(self, event: chat_pb2.ChatEvent) -> bytes:
        return b"<e:" + str(event.WhichOneof("event")).encode() + b">"

    def end(self) -> bytes:
        return b"<end>"

    def error(self, error: OpenAIError) -> bytes:
        self.errors.append(error)
        return f"<err:{error.status}:{error.message}>".encode()


class ListCall(ScriptedCall):
    """Events then EOF (or an error raised from read())."""

    def __init__(self, *events: Any) -> None:
        super().__init__()
        self.items = list(events)

    async def read(self) -> Any:
        await asyncio.sleep(0)
        item = self.items.pop(0) if self.items else grpc.aio.EOF
        if isinstance(item, BaseException):
            raise item
        return item


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "details")


def usage() -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(usage=chat_pb2.Usage(prompt_tokens=1))


async def idle() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def run_response(response: Any, receive: Any = idle) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await asyncio.wait_for(response(SCOPE, receive, send), 2.0)
    return messages


def test_frame_and_named_frame_bytes() -> None:
    from facade.sse import frame, named_frame

    assert frame({"a": 1, "b": "x"}) == b'data: {"a":1,"b":"x"}\n\n'
    assert named_frame(b"message_stop", {"type": "message_stop"}) == (
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def test_constants() -> None:
    from facade import sse

    assert sse.SSE_HEADERS == {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    assert sse.KEEPALIVE_COMMENT == b": keep-alive\n\n"
    assert sse.PING_EVENT == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert sse.DEFAULT_KEEPALIVE_S == 15.0
    keepalive = sse.Keepalive(3.0)
    assert (keepalive.interval, keepalive.ping, keepalive.since) == (3.0, b": keep-alive\n\n", None)


async def test_stream_frames_in_order_with_headers() -> None:
    call = ListCall(text("a"), usage())
    translator = Recorder()
    response = await open_stream(call, translator, idle, {"x-request-id": "r1"}, keepalive_s=0)  # type: ignore[arg-type]
    messages = await run_response(response)
    assert translator.first == text("a")
    start = messages[0]
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"x-request-id"] == b"r1"
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-accel-buffering"] == b"no"
    assert headers[b"content-type"].startswith(b"text/event-stream")
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert body == b"<start><t:a><e:usage><end>"
    assert messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert call.cancels == 2  # the generator's finally, and on_close


async def test_empty_opening_is_not_sent() -> None:
    call = ListCall(text("a"))
    response = await open_stream(call, Recorder(opening=b""), idle, {}, keepalive_s=0)  # type: ignore[arg-type]
    messages = await run_response(response)
    bodies = [m["body"] for m in messages[1:]]
    assert bodies == [b"<t:a>", b"<end>", b""]


async def test_in_band_error_after_headers() -> None:
    call = ListCall(text("a"), rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    translator = Recorder()
    response = await open_stream(call, translator, idle, {}, keepalive_s=0)  # type: ignore[arg-type]
    messages = await run_response(response)
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert body == b"<start><t:a><err:504:The request timed out before the model finished.>"
    assert translator.errors[0].code == "timeout"


async def test_core_eof_before_first_event_is_502() -> None:
    from facade.errors import OpenAIError

    with pytest.raises(OpenAIError) as caught:
        await open_stream(ListCall(), Recorder(), idle, {}, keepalive_s=0)  # type: ignore[arg-type]
    assert caught.value.status == 502
    assert caught.value.message == "The gateway core ended the stream without an answer."
    assert caught.value.type == "server_error"


async def test_core_failure_before_first_event_is_its_http_error() -> None:
    from facade.errors import OpenAIError

    call = ListCall(rpc_error(grpc.StatusCode.UNAUTHENTICATED))
    with pytest.raises(OpenAIError) as caught:
        await open_stream(call, Recorder(), idle, {}, keepalive_s=0)  # type: ignore[arg-type]
    assert caught.value.status == 401
    assert caught.value.code == "invalid_api_key"
    # with a wait limit as well
    call = ListCall(rpc_error(grpc.StatusCode.UNAUTHENTICATED))
    with pytest.raises(OpenAIError) as caught:
        await open_stream(call, Recorder(), idle, {}, keepalive_s=5)  # type: ignore[arg-type]
    assert caught.value.status == 401


class SlowCall(ScriptedCall):
    """The first read takes `delay` seconds, then events, then EOF or an error."""

    def __init__(self, delay: float, *items: Any) -> None:
        super().__init__()
        self.delay = delay
        self.items = list(items)
        self.reads = 0

    async def read(self) -> Any:
        self.reads += 1
        if self.reads == 1:
            await asyncio.sleep(self.delay)
        item = self.items.pop(0) if self.items else grpc.aio.EOF
        if isinstance(item, BaseException):
            raise item
        return item


async def test_first_event_quick_is_the_event_itself() -> None:
    from facade.sse import first_event

    event = text("hi")
    assert await first_event(ListCall(event), idle, 5.0) == event  # type: ignore[arg-type]
    assert await first_event(ListCall(event), idle, 0) == event  # type: ignore[arg-type]
    assert await first_event(ListCall(), idle, 0) is grpc.aio.EOF  # type: ignore[arg-type]


async def test_first_event_slow_is_a_pending_read() -> None:
    from facade.sse import first_event

    call = SlowCall(0.3, text("late"))
    pending = await first_event(call, idle, 0.05)  # type: ignore[arg-type]
    assert isinstance(pending, asyncio.Task)
    assert not pending.done()
    assert await pending == text("late")
    assert call.cancels == 0


async def test_first_event_without_limit_waits() -> None:
    from facade.sse import first_event

    call = SlowCall(0.2, text("late"))
    assert await first_event(call, idle, 0) == text("late")  # type: ignore[arg-type]


async def test_first_event_cancelled_from_outside_cancels_call() -> None:
    from facade.sse import first_event

    call = SlowCall(10.0, text("never"))
    task = asyncio.ensure_future(first_event(call, idle, 5.0))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.cancels == 1


async def test_first_event_client_gone_while_waiting() -> None:
    from facade.sse import first_event

    call = SlowCall(10.0, text("never"))

    async def gone() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    with pytest.raises(ClientGone):
        await asyncio.wait_for(first_event(call, gone, 5.0), 2.0)  # type: ignore[arg-type]


async def test_late_first_event_streams_after_headers() -> None:
    call = SlowCall(0.2, text("a"))
    response = await open_stream(call, Recorder(), idle, {}, keepalive_s=0.05)  # type: ignore[arg-type]
    messages = await run_response(response)
    assert messages[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in messages[1:])
    # keep-alive comments went out while the model thought, then the answer
    assert body.startswith(b": keep-alive\n\n")
    assert body.replace(b": keep-alive\n\n", b"") == b"<start><t:a><end>"


async def test_late_eof_is_an_in_band_502() -> None:
    call = SlowCall(0.2)
    translator = Recorder()
    response = await open_stream(call, translator, idle, {}, keepalive_s=0.05, ping=b"P")  # type: ignore[arg-type]
    messages = await run_response(response)
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert body.replace(b"P", b"") == b"<err:502:The gateway core ended the stream without an answer.>"
    assert translator.errors[0].type == "server_error"


async def test_late_failure_is_an_in_band_error() -> None:
    call = SlowCall(0.2, rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    response = await open_stream(call, Recorder(), idle, {}, keepalive_s=0.05, ping=b"")  # type: ignore[arg-type]
    messages = await run_response(response)
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert body == b"<err:504:The request timed out before the model finished.>"


async def test_keepalive_pings_after_silence_only() -> None:
    """A stream silent for ~0.35 s with a 0.1 s interval gets a few pings, none after the end."""
    from facade.sse import PING_EVENT

    class Gap(ScriptedCall):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        async def read(self) -> Any:
            self.step += 1
            if self.step == 1:
                return text("a")
            if self.step == 2:
                await asyncio.sleep(0.35)
                return text("b")
            return grpc.aio.EOF

    call = Gap()
    response = await open_stream(call, Recorder(), idle, {}, keepalive_s=0.1, ping=PING_EVENT)  # type: ignore[arg-type]
    messages = await run_response(response)
    bodies = [m["body"] for m in messages[1:]]
    pings = [b for b in bodies if b == PING_EVENT]
    assert 2 <= len(pings) <= 4
    for message in messages[1:]:
        assert message["type"] == "http.response.body"
        assert set(message) == {"type", "body", "more_body"}
    assert [b for b in bodies if b != PING_EVENT] == [b"<start>", b"<t:a>", b"<t:b>", b"<end>", b""]
    assert bodies[-1] == b""
    assert messages[-1]["more_body"] is False
    for message in messages[1:-1]:
        assert message["more_body"] is True
    # no ping after the end
    await asyncio.sleep(0.25)
    assert len(messages) == 1 + len(bodies)


async def test_no_keepalive_when_interval_zero() -> None:
    from facade.sse import EventStreamResponse, Keepalive

    async def body() -> Any:
        yield b"x"
        await asyncio.sleep(0.2)
        yield b"y"

    closes: list[int] = []
    response = EventStreamResponse(
        body(), on_close=lambda: closes.append(1), headers={}, keepalive=Keepalive(0.0)
    )
    messages = await run_response(response)
    assert [m["body"] for m in messages[1:]] == [b"x", b"y", b""]
    assert closes == [1]


async def test_keepalive_counts_from_since() -> None:
    """`since` long past: the first ping is due at once, before the first frame."""
    from facade.sse import EventStreamResponse, Keepalive

    async def body() -> Any:
        await asyncio.sleep(0.1)
        yield b"x"

    since = asyncio.get_running_loop().time() - 10.0
    response = EventStreamResponse(
        body(), on_close=lambda: None, headers={}, keepalive=Keepalive(5.0, b"P", since)
    )
    messages = await run_response(response)
    assert [m["body"] for m in messages[1:]] == [b"P", b"x", b""]


async def test_keepalive_counts_from_last_frame() -> None:
    """Frames every 0.05 s with a 0.2 s interval: never silent long enough for a ping."""
    from facade.sse import EventStreamResponse, Keepalive

    async def body() -> Any:
        for index in range(6):
            await asyncio.sleep(0.05)
            yield str(index).encode()

    response = EventStreamResponse(body(), on_close=lambda: None, headers={}, keepalive=Keepalive(0.2, b"P"))
    messages = await run_response(response)
    assert [m["body"] for m in messages[1:]] == [b"0", b"1", b"2", b"3", b"4", b"5", b""]


async def test_disconnect_stops_stream_and_runs_on_close() -> None:
    from facade.sse import EventStreamResponse

    closes: list[int] = []
    finished = asyncio.Event()

    async def body() -> Any:
        try:
            yield b"x"
            await asyncio.Event().wait()
            yield b"never"
        finally:
            finished.set()

    async def leave() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    response = EventStreamResponse(body(), on_close=lambda: closes.append(1), headers={})
    messages = await run_response(response, leave)
    assert [m.get("body") for m in messages[1:]] == [b"x"]
    assert closes == [1]
    assert finished.is_set()


async def test_other_messages_before_disconnect_are_ignored() -> None:
    from facade.sse import EventStreamResponse

    received = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return received.pop() if received else {"type": "http.disconnect"}

    async def body() -> Any:
        yield b"x"
        await asyncio.Event().wait()
        yield b"never"

    response = EventStreamResponse(body(), on_close=lambda: None, headers={})
    messages = await run_response(response, receive)
    assert [m.get("body") for m in messages[1:]] == [b"x"]


async def test_cancelled_from_outside_propagates() -> None:
    from facade.sse import EventStreamResponse

    closes: list[int] = []

    async def body() -> Any:
        yield b"x"
        await asyncio.Event().wait()
        yield b"never"

    async def send(message: dict[str, Any]) -> None:
        pass

    response = EventStreamResponse(body(), on_close=lambda: closes.append(1), headers={})
    task = asyncio.ensure_future(response(SCOPE, idle, send))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closes == [1]


async def test_disconnect_while_late_first_event_pending_discards_read() -> None:
    # The loop is the session's: other modules' servers have tasks of their own on it.
    before = asyncio.all_tasks()
    call = SlowCall(10.0, text("never"))
    response = await open_stream(call, Recorder(), idle, {}, keepalive_s=0.05, ping=b"P")  # type: ignore[arg-type]

    async def leave() -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return {"type": "http.disconnect"}

    messages = await run_response(response, leave)
    assert all(m.get("body", b"P") == b"P" for m in messages[1:])
    assert call.cancels == 2
    await asyncio.sleep(0)
    pending = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert pending == []


async def test_keepalive_without_since_pings_during_a_silence() -> None:
    from facade.sse import EventStreamResponse, Keepalive

    async def body() -> Any:
        await asyncio.sleep(0.3)
        yield b"x"

    response = EventStreamResponse(body(), on_close=lambda: None, headers={}, keepalive=Keepalive(0.1, b"P"))
    messages = await run_response(response)
    bodies = [m["body"] for m in messages[1:]]
    assert b"P" in bodies
    assert [b for b in bodies if b != b"P"] == [b"x", b""]
    assert messages[1] == {"type": "http.response.body", "body": b"P", "more_body": True}


async def test_heartbeat_stops_on_a_body_without_more_body() -> None:
    """ASGI's `more_body` defaults to False: such a body is the last, and no ping may follow it."""
    from facade.sse import Keepalive, _Heartbeat

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    heartbeat = _Heartbeat(send, Keepalive(0.05, b"P"))  # type: ignore[arg-type]
    await heartbeat.send({"type": "http.response.start", "status": 200, "headers": []})
    await heartbeat.send({"type": "http.response.body", "body": b"end"})
    await asyncio.sleep(0.2)
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.body", "body": b"end"},
    ]


async def test_first_ping_counts_from_the_request_arrival() -> None:
    """open_stream waited `keepalive_s` for the first event already: the first ping is due as
    soon as the headers go out, before an answer that comes 0.2 s later."""
    call = SlowCall(0.6, text("a"))
    response = await open_stream(call, Recorder(), idle, {}, keepalive_s=0.4, ping=b"P")  # type: ignore[arg-type]
    messages = await run_response(response)
    assert [m["body"] for m in messages[1:]] == [b"P", b"<start><t:a>", b"<end>", b""] or [
        m["body"] for m in messages[1:]
    ] == [b"P", b"<start>", b"<t:a>", b"<end>", b""]


async def test_first_event_without_limit_cancelled_from_outside() -> None:
    from facade.sse import first_event

    call = SlowCall(10.0, text("never"))
    task = asyncio.ensure_future(first_event(call, idle, 0))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.cancels == 1


async def test_discard_marks_a_failed_read_seen() -> None:
    from facade.sse import discard

    async def fails() -> object:
        raise RuntimeError("read failed")

    task = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    assert task.done()
    discard(task)
    await asyncio.sleep(0)
    assert task._log_traceback is False  # no "never retrieved" log

    pending = asyncio.ensure_future(asyncio.sleep(10))
    discard(pending)
    await asyncio.sleep(0)
    assert pending.cancelled()


class BurstCall(ScriptedCall):
    """Every event is ready at once; the client is slow, so what waits leaves merged."""

    def __init__(self, *events: chat_pb2.ChatEvent) -> None:
        super().__init__(*events)
        self.left = len(events)

    async def read(self) -> Any:
        if self.left == 0:
            return grpc.aio.EOF
        self.left -= 1
        return self.events.get_nowait()


def finish() -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP))


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ((text("a"), usage(), finish()), b"<start><t:a><e:usage><e:finish><end>"),
        ((text("a"), usage(), text("b"), finish()), b"<start><t:a><e:usage><t:b><e:finish><end>"),
        (
            (text("a"), usage(), text("b"), usage(), finish()),
            b"<start><t:a><e:usage><t:b><e:usage><e:finish><end>",
        ),
    ],
)
async def test_merged_writes_keep_every_frame(
    events: tuple[chat_pb2.ChatEvent, ...], expected: bytes
) -> None:
    call = BurstCall(*events)
    response = await open_stream(call, Recorder(), idle, {}, keepalive_s=0)  # type: ignore[arg-type]
    messages: list[dict[str, Any]] = []

    async def slow_send(message: dict[str, Any]) -> None:
        messages.append(message)
        await asyncio.sleep(0.05)

    await asyncio.wait_for(response(SCOPE, idle, slow_send), 2.0)  # type: ignore[arg-type]
    bodies = [m["body"] for m in messages[1:]]
    assert b"".join(bodies) == expected
    assert len(bodies) < len(events) + 2  # some were merged


async def test_cancelled_from_outside_as_the_client_leaves_still_propagates() -> None:
    """An outside cancel that lands together with the watcher's own must not be swallowed."""
    from facade.sse import EventStreamResponse

    async def body() -> Any:
        yield b"x"
        await asyncio.Event().wait()
        yield b"never"

    sent = asyncio.Event()
    outer: list[asyncio.Task[None]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.set()

    async def receive() -> dict[str, Any]:
        await sent.wait()
        await asyncio.sleep(0.02)
        outer[0].cancel()  # the server cancels the request, just as the disconnect arrives
        return {"type": "http.disconnect"}

    closes: list[int] = []
    response = EventStreamResponse(body(), on_close=lambda: closes.append(1), headers={})
    outer.append(asyncio.ensure_future(response(SCOPE, receive, send)))  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(outer[0], 2.0)
    assert closes == [1]
