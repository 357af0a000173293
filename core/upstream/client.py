"""The driver to Cursor: one per process. It picks each account's dialect, runs the call through
that dialect's generated stub, and owns everything that is not translation: the deadline, the
stall watchdog, heartbeats and replies on bidi streams, cancellation and error logging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError

from core.chat.catalog import ModelInfo
from core.config import CoreSettings
from core.pool.accounts import Account, AccountPool
from core.upstream.base import Dialect, Exchange, Probe
from core.upstream.choice import DialectChooser
from core.upstream.context import UpstreamContext
from core.upstream.dialects import make_dialects
from core.upstream.errors import USER_ABORTED, Failure, UpstreamError, classify, error_details
from cursorgate.v1 import chat_pb2

log = logging.getLogger("cursorgate.upstream")

# Ends a bidi request stream (the driver's half-close).
_CLOSE = object()


class CursorClient:
    def __init__(self, settings: CoreSettings, pool: AccountPool | None = None) -> None:
        self.settings = settings
        self.ctx = UpstreamContext.create(settings)
        self.dialects = make_dialects(self.ctx)
        self.chooser = DialectChooser(settings, self.dialects, pool)

    async def aclose(self) -> None:
        await self.ctx.aclose()

    async def stream_chat(
        self, account: Account, request: chat_pb2.ChatRequest, time_remaining: float | None
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        """The answer as gateway events. When Cursor calls the client outdated before the first
        event and the account's dialect was chosen automatically, the next dialect is probed and
        the call made once more."""
        for attempt in range(2):
            dialect = await self.chooser.dialect_for(account)
            started = False
            try:
                events = self._drive(dialect, account, request, time_remaining)
                async with contextlib.aclosing(events):  # type: ignore[type-var]
                    async for event in events:
                        started = True
                        yield event
                return
            except UpstreamError as err:
                if started or attempt or err.failure is not Failure.OUTDATED_CLIENT:
                    raise
                if not self.chooser.demote(account, dialect, err.message):
                    raise

    async def _drive(
        self, dialect: Dialect, account: Account, request: chat_pb2.ChatRequest, time_remaining: float | None
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        exchange = await dialect.exchange(account, request)
        headers = dialect.headers(account)
        loop = asyncio.get_running_loop()
        # The caller's deadline travels on as connect-timeout-ms. It is sent as a header and
        # enforced by the watchdog below rather than by connectrpc's timeout_ms, which would
        # arm one more asyncio timer for every frame.
        deadline = None
        if time_remaining:
            headers["connect-timeout-ms"] = str(int(time_remaining * 1000))
            deadline = loop.time() + time_remaining
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        heartbeat: _Cancel | None = None
        closed = False
        if dialect.bidi:
            for message in exchange.opening():
                outbox.put_nowait(message)
            heartbeat = self._heartbeats(dialect, exchange, outbox)
        stream = dialect.open(account, exchange, _drain(outbox), headers)
        frames = 0
        answered = False
        watchdog = _Watchdog(self.settings.upstream_connect_timeout, deadline)
        try:
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                while True:
                    now = loop.time()
                    if deadline is not None and now >= deadline:
                        watchdog.fired = "deadline"
                        raise self._expired(watchdog, answered)
                    watchdog.since = now
                    watchdog.waiting = True
                    try:
                        frame = await anext(stream)
                    except StopAsyncIteration:
                        break
                    except (ConnectError, asyncio.CancelledError):
                        if watchdog.fired:
                            raise self._expired(watchdog, answered) from None
                        raise
                    watchdog.waiting = False
                    frames += 1
                    events = exchange.feed(frame)
                    # Bidi handshakes (run_ready, exec/KV requests, heartbeats) are not an answer:
                    # until the first event, a silence is still "Cursor sent nothing".
                    if events and not answered:
                        answered = True
                        watchdog.wait = self.settings.upstream_idle_timeout
                    for event in events:
                        yield event
                    if exchange.outbox:
                        for message in exchange.outbox:
                            outbox.put_nowait(message)
                        exchange.outbox.clear()
                    if exchange.done and not closed:
                        closed = True
                        outbox.put_nowait(_CLOSE)
        except ConnectError as err:
            details = error_details(err)
            if details is not None and details.error == USER_ABORTED:
                return
            if err.code == ConnectCode.CANCELED and _cancelling():
                raise asyncio.CancelledError from None  # P8: the caller went away
            failure = dialect.classify(err)
            # Cursor's messages carry no secrets; they are what an operator needs to see.
            log.warning(
                "upstream %s (%s) after %d frame(s): %s: %s",
                failure.failure.value,
                dialect.name.value,
                frames,
                err.code.value,
                err.message[:200],
            )
            raise failure from None
        finally:
            watchdog.close()
            if heartbeat is not None:
                heartbeat.cancel()
            if not closed:
                outbox.put_nowait(_CLOSE)
        for event in exchange.finish():
            yield event

    def _heartbeats(self, dialect: Dialect, exchange: Exchange, outbox: asyncio.Queue[Any]) -> _Cancel:
        """A timer, not a task: every `heartbeat_s` the exchange's keep-alive joins the outbox."""
        loop = asyncio.get_running_loop()
        handle: list[asyncio.TimerHandle] = []

        def tick() -> None:
            message = exchange.heartbeat()
            if message is not None and not exchange.done:
                outbox.put_nowait(message)
            handle[0] = loop.call_later(dialect.heartbeat_s, tick)

        handle.append(loop.call_later(dialect.heartbeat_s, tick))
        return _Cancel(handle)

    def _expired(self, watchdog: _Watchdog, answered: bool) -> UpstreamError:
        task = asyncio.current_task()
        if watchdog.cancelled and task is not None:
            task.uncancel()  # the cancellation was the watchdog's, not the caller's
        if watchdog.fired == "deadline":
            return classify(ConnectError(ConnectCode.DEADLINE_EXCEEDED, "Request timed out"))
        return self._stalled(answered)

    def _stalled(self, answered: bool) -> UpstreamError:
        if not answered:
            return UpstreamError(Failure.UNAVAILABLE, "Cursor sent nothing before the connect timeout.")
        return UpstreamError(
            Failure.TIMEOUT, f"Cursor's stream stalled for {self.settings.upstream_idle_timeout:g} s."
        )

    async def available_models(self, account: Account) -> dict[str, ModelInfo]:
        dialect = await self.chooser.dialect_for(account)
        return await dialect.available_models(account)

    async def probe(self, account: Account) -> dict[str, Probe]:
        """Probe every dialect for the account now (admin "probe again"); auto picks afresh."""
        return await self.chooser.reprobe(account)


class _Cancel:
    """Cancels the current handle of a self-rescheduling timer."""

    __slots__ = ("_handle",)

    def __init__(self, handle: list[asyncio.TimerHandle]) -> None:
        self._handle = handle

    def cancel(self) -> None:
        self._handle[0].cancel()


async def _drain(outbox: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    """The request side of a bidi call: whatever the driver queues, until it half-closes."""
    while True:
        message = await outbox.get()
        if message is _CLOSE:
            return
        yield message


class _Watchdog:
    """One timer per stream, for the wait for each frame and for the caller's deadline.

    The stream sets `since` and `waiting` before each read. A read that lasts longer than
    `wait` seconds, or that is still pending at `deadline`, cancels the task; `fired` says
    which. Time spent suspended at a yield (a slow caller) does not count. The timer is
    re-armed only when it fires, so a frame costs two attribute writes instead of an
    asyncio.timeout() (a timer armed and cancelled) per frame.
    """

    __slots__ = ("_handle", "_loop", "_task", "cancelled", "deadline", "fired", "since", "wait", "waiting")

    def __init__(self, wait: float, deadline: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self.wait = wait
        self.deadline = deadline
        self.since = self._loop.time()
        self.waiting = False
        self.fired: str | None = None
        self.cancelled = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self.since + wait, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if not self.waiting:
            # The deadline is checked again before the next read.
            self._handle = self._loop.call_at(now + self.wait, self._check)
            return
        if self.deadline is not None and now >= self.deadline:
            self.fired = "deadline"
        elif now >= self.since + self.wait:
            self.fired = "stall"
        if self.fired is not None and self._task is not None:
            self._handle = None
            self.cancelled = True
            self._task.cancel()
            return
        due = self.since + self.wait
        if self.deadline is not None:
            due = min(due, self.deadline)
        self._handle = self._loop.call_at(due, self._check)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
