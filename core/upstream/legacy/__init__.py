"""The legacy dialect: aiserver.v1.ChatService/StreamUnifiedChatWithTools, IDE 2.x identity.

One request, a server stream of frames. Public 2026 sources report that Cursor answers it with
"Update Required" for current accounts; it stays for accounts and deployments where it works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from connectrpc.errors import ConnectError

from aiserver.v1 import chat_pb2 as cursor
from aiserver.v1 import models_pb2
from aiserver.v1.chat_connect import ChatServiceClient
from aiserver.v1.models_connect import AiServiceClient
from core.chat.catalog import ModelInfo
from core.pool.accounts import Account
from core.upstream.base import PROBE_MODEL, DialectName, Probe
from core.upstream.catalog import models_from_catalog, wire_model
from core.upstream.context import UpstreamContext
from core.upstream.errors import Failure, UpstreamError, classify
from core.upstream.headers import cursor_headers
from core.upstream.legacy.events import EventMapper
from core.upstream.legacy.request import Environment, build_request
from core.upstream.prompt import resolve_files
from cursorgate.v1 import chat_pb2


class LegacyExchange:
    __slots__ = ("_body", "_mapper", "done", "outbox")

    def __init__(self, body: cursor.StreamUnifiedChatRequestWithTools, mapper: EventMapper) -> None:
        self._body = body
        self._mapper = mapper
        self.outbox: list[Any] = []
        self.done = False

    def opening(self) -> list[Any]:
        return [self._body]

    def feed(self, frame: Any) -> list[chat_pb2.ChatEvent]:
        return self._mapper.feed(frame)

    def heartbeat(self) -> Any | None:
        return None

    def finish(self) -> list[chat_pb2.ChatEvent]:
        return self._mapper.finish_calls()


class LegacyDialect:
    name = DialectName.LEGACY
    bidi = False
    heartbeat_s = 0.0

    def __init__(self, ctx: UpstreamContext) -> None:
        self.ctx = ctx
        self._url = ctx.settings.upstream_url.rstrip("/")

    # Stubs per account route (core/upstream/context.py): each proxy has its own HTTP clients.

    def _chat(self, account: Account) -> ChatServiceClient:
        return self.ctx.connect_client(account, ChatServiceClient, self._url, http2=False, gzip_requests=True)

    def _ai(self, account: Account) -> AiServiceClient:
        return self.ctx.connect_client(account, AiServiceClient, self._url, http2=False, gzip_requests=True)

    def headers(self, account: Account) -> dict[str, str]:
        return cursor_headers(account.token, self.ctx.legacy_identity(account))

    async def exchange(self, account: Account, request: chat_pb2.ChatRequest) -> LegacyExchange:
        identity = self.ctx.legacy_identity(account)
        model = wire_model(account, request.model)
        # StreamUnifiedChatRequest has images but no field for other files in any source we have
        # (docs/cursor-protocol.md, agent-protocol.md): text files are inlined, PDFs refused.
        request = await resolve_files(request, self.ctx.files, carries_pdf=False, dialect="legacy")
        body = await build_request(
            request, Environment(identity.client_version, identity.timezone), self.ctx.images, model=model
        )
        single_call = request.HasField("parallel_tool_calls") and not request.parallel_tool_calls
        return LegacyExchange(body, EventMapper(max_calls=1 if single_call else None))

    def open(
        self, account: Account, exchange: Any, messages: AsyncIterator[Any], headers: Mapping[str, str]
    ) -> AsyncIterator[Any]:
        return self._chat(account).stream_unified_chat_with_tools(exchange.opening()[0], headers=headers)

    def classify(self, err: ConnectError) -> UpstreamError:
        return classify(err)

    async def available_models(self, account: Account) -> dict[str, ModelInfo]:
        try:
            response = await self._ai(account).available_models(
                models_pb2.AvailableModelsRequest(), headers=self.headers(account), timeout_ms=30_000
            )
        except ConnectError as err:
            raise classify(err) from None
        return models_from_catalog(response)

    async def probe(self, account: Account) -> Probe:
        request = chat_pb2.ChatRequest(
            model=PROBE_MODEL,
            messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[{"text": "ping"}])],
        )
        exchange = await self.exchange(account, request)
        stream = self.open(account, exchange, _nothing(), self.headers(account))
        try:
            async for _ in stream:
                break
        except ConnectError as err:
            failure = classify(err)
            if failure.failure in (Failure.BAD_MODEL, Failure.BAD_REQUEST):
                return Probe(
                    True, "StreamUnifiedChatWithTools answers (the probe model was refused as unknown)"
                )
            if failure.failure is Failure.OUTDATED_CLIENT:
                return Probe(False, f"refused: {failure.message}")
            raise failure from None
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return Probe(True, "StreamUnifiedChatWithTools answers")


async def _nothing() -> AsyncIterator[Any]:
    return
    yield
