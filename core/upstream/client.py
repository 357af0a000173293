"""The Connect client to Cursor: one HTTP client per process, headers per account and call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pyqwest
from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError

from aiserver.v1 import models_pb2
from aiserver.v1.chat_connect import ChatServiceClient
from aiserver.v1.models_connect import AiServiceClient
from core.accounts import Account
from core.catalog import ModelInfo
from core.config import CoreSettings
from core.upstream.compression import FastGzip
from core.upstream.errors import USER_ABORTED, Failure, UpstreamError, classify, error_details
from core.upstream.events import EventMapper
from core.upstream.headers import ClientIdentity, cursor_headers
from core.upstream.images import ImageLoader
from core.upstream.request import Environment, build_request
from cursorgate.v1 import chat_pb2

log = logging.getLogger("cursorgate.upstream")


class CursorClient:
    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._transport = pyqwest.HTTPTransport(
            tls_include_system_certs=True,
            # pyqwest's HTTP/2 can die under many small frames (python-stack.md, P14).
            http_version=pyqwest.HTTPVersion.HTTP1 if settings.upstream_http1 else None,
            connect_timeout=settings.upstream_connect_timeout,
            # Backstop for a dead peer; the per-frame watchdog below is what callers see.
            read_timeout=settings.upstream_idle_timeout + 5,
            pool_idle_timeout=90.0,
            enable_otel=False,
        )
        http = pyqwest.Client(self._transport)
        url = settings.upstream_url.rstrip("/")
        gzip = FastGzip()  # the default wire ("gzip,identity"), decompressed in C
        self._chat = ChatServiceClient(
            url, http_client=http, accept_compression=[gzip], send_compression=gzip
        )
        self._ai = AiServiceClient(url, http_client=http, accept_compression=[gzip], send_compression=gzip)
        self._images = ImageLoader(
            settings.image_max_bytes,
            settings.image_fetch_timeout,
            allow_private=settings.image_fetch_private,
            per_owner=settings.image_fetch_per_license,
            per_host=settings.image_fetch_per_host,
        )

    async def aclose(self) -> None:
        await self._images.aclose()
        await self._transport.aclose()

    def _identity(self, account: Account) -> ClientIdentity:
        return ClientIdentity(
            client_version=account.client_version or self.settings.client_version,
            timezone=self.settings.timezone,
            ghost_mode=self.settings.ghost_mode,
        )

    async def stream_chat(
        self, account: Account, request: chat_pb2.ChatRequest, time_remaining: float | None
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        identity = self._identity(account)
        body = await build_request(
            request, Environment(identity.client_version, identity.timezone), self._images
        )
        headers = cursor_headers(account.token, identity)
        single_call = request.HasField("parallel_tool_calls") and not request.parallel_tool_calls
        mapper = EventMapper(max_calls=1 if single_call else None)
        # The caller's deadline travels on as connect-timeout-ms. It is sent as a header and
        # enforced by the watchdog below rather than by connectrpc's timeout_ms, which would
        # arm one more asyncio timer for every frame.
        deadline = None
        if time_remaining:
            headers["connect-timeout-ms"] = str(int(time_remaining * 1000))
            deadline = asyncio.get_running_loop().time() + time_remaining
        stream = self._chat.stream_unified_chat_with_tools(body, headers=headers)
        frames = 0
        loop = asyncio.get_running_loop()
        watchdog = _Watchdog(self.settings.upstream_connect_timeout, deadline)
        try:
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                while True:
                    now = loop.time()
                    if deadline is not None and now >= deadline:
                        watchdog.fired = "deadline"
                        raise self._expired(watchdog, frames)
                    watchdog.since = now
                    watchdog.waiting = True
                    try:
                        frame = await anext(stream)
                    except StopAsyncIteration:
                        break
                    except (ConnectError, asyncio.CancelledError):
                        if watchdog.fired:
                            raise self._expired(watchdog, frames) from None
                        raise
                    watchdog.waiting = False
                    if frames == 0:
                        watchdog.wait = self.settings.upstream_idle_timeout
                    frames += 1
                    for event in mapper.feed(frame):
                        yield event
        except ConnectError as err:
            details = error_details(err)
            if details is not None and details.error == USER_ABORTED:
                return
            if err.code == ConnectCode.CANCELED and _cancelling():
                raise asyncio.CancelledError from None  # P8: the caller went away
            failure = classify(err)
            # Cursor's messages carry no secrets; they are what an operator needs to see.
            log.warning(
                "upstream %s after %d frame(s): %s: %s",
                failure.failure.value,
                frames,
                err.code.value,
                err.message[:200],
            )
            raise failure from None
        finally:
            watchdog.close()
        for event in mapper.finish_calls():
            yield event

    def _expired(self, watchdog: _Watchdog, frames: int) -> UpstreamError:
        task = asyncio.current_task()
        if watchdog.cancelled and task is not None:
            task.uncancel()  # the cancellation was the watchdog's, not the caller's
        if watchdog.fired == "deadline":
            return classify(ConnectError(ConnectCode.DEADLINE_EXCEEDED, "Request timed out"))
        return self._stalled(frames)

    def _stalled(self, frames: int) -> UpstreamError:
        if frames == 0:
            return UpstreamError(Failure.UNAVAILABLE, "Cursor sent nothing before the connect timeout.")
        return UpstreamError(
            Failure.TIMEOUT, f"Cursor's stream stalled for {self.settings.upstream_idle_timeout:g} s."
        )

    async def available_models(self, account: Account) -> dict[str, ModelInfo]:
        headers = cursor_headers(account.token, self._identity(account))
        try:
            response = await self._ai.available_models(
                models_pb2.AvailableModelsRequest(), headers=headers, timeout_ms=30_000
            )
        except ConnectError as err:
            raise classify(err) from None
        models = {
            m.name: ModelInfo(
                id=m.name,
                display_name=m.client_display_name or m.name,
                supports_thinking=m.supports_thinking,
                supports_images=m.supports_images,
                supports_tools=m.supports_agent,
                context_window=m.context_token_limit,
            )
            for m in response.models
        }
        for name in response.model_names:
            models.setdefault(name, ModelInfo(id=name, display_name=name))
        return models


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
