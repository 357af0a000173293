"""The Connect client to Cursor: one HTTP client per process, headers per account and call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pyqwest
from aiserver.v1 import models_pb2
from aiserver.v1.chat_connect import ChatServiceClient
from aiserver.v1.models_connect import AiServiceClient
from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError
from cursorgate.v1 import chat_pb2

from core.accounts import Account
from core.catalog import ModelInfo
from core.config import CoreSettings
from core.upstream.errors import USER_ABORTED, Failure, UpstreamError, classify, error_details
from core.upstream.events import EventMapper
from core.upstream.headers import ClientIdentity, cursor_headers
from core.upstream.images import ImageLoader
from core.upstream.request import Environment, build_request

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
        self._chat = ChatServiceClient(url, http_client=http)
        self._ai = AiServiceClient(url, http_client=http)
        self._images = ImageLoader(
            settings.image_max_bytes, settings.image_fetch_timeout, allow_private=settings.image_fetch_private
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
        # The caller's deadline travels on as connect-timeout-ms.
        timeout_ms = int(time_remaining * 1000) if time_remaining else None
        stream = self._chat.stream_unified_chat_with_tools(body, headers=headers, timeout_ms=timeout_ms)
        frames = 0
        wait = self.settings.upstream_connect_timeout
        try:
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                while True:
                    watchdog = asyncio.timeout(wait)
                    try:
                        async with watchdog:
                            frame = await anext(stream)
                    except StopAsyncIteration:
                        break
                    except ConnectError:
                        if watchdog.expired():
                            raise self._stalled(frames) from None
                        raise
                    except TimeoutError:
                        raise self._stalled(frames) from None
                    frames += 1
                    wait = self.settings.upstream_idle_timeout
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
        for event in mapper.finish_calls():
            yield event

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


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
