"""The agent dialect: agent.v1.AgentService/Run, the Cursor CLI's bidi chat RPC, CLI identity.

Cursor runs the agent loop: it streams interaction updates and asks the client, on the same
stream, for request context, KV blobs and tool executions. This package answers all of those
without running anything (agent-protocol.md §2-§5; the strategy is described in request.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from connectrpc.errors import ConnectError

from agent.v1 import agent_pb2 as agent
from agent.v1.agent_connect import AgentServiceClient
from aiserver.v1 import models_pb2
from aiserver.v1.models_connect import AiServiceClient
from core.chat.catalog import ModelInfo
from core.pool.accounts import Account
from core.upstream.agent.events import AgentExchange
from core.upstream.agent.request import build_run
from core.upstream.base import DialectName, Probe
from core.upstream.catalog import models_from_catalog, wire_model
from core.upstream.context import UpstreamContext
from core.upstream.errors import Failure, UpstreamError, classify
from core.upstream.headers import cli_headers, ide_headers
from core.upstream.prompt import resolve_files
from cursorgate.v1 import chat_pb2


class AgentDialect:
    name = DialectName.AGENT
    bidi = True
    # "The server sees a client frame within 5 s" (agent-protocol.md §3.8).
    heartbeat_s = 5.0

    def __init__(self, ctx: UpstreamContext) -> None:
        self.ctx = ctx
        self._api = ctx.settings.upstream_url.rstrip("/")

    # Stubs per account route (core/upstream/context.py): each proxy has its own HTTP clients.

    def _models(self, account: Account) -> AgentServiceClient:
        # GetUsableModels lives on api2 too, HTTP/2 only (§5.1).
        return self.ctx.connect_client(
            account, AgentServiceClient, self._api, http2=True, gzip_requests=False
        )

    def _ai(self, account: Account) -> AiServiceClient:
        # AvailableModels: the IDE catalog.
        return self.ctx.connect_client(account, AiServiceClient, self._api, http2=False, gzip_requests=True)

    def headers(self, account: Account) -> dict[str, str]:
        return cli_headers(account.token, self.ctx.cli_identity(account))

    async def exchange(self, account: Account, request: chat_pb2.ChatRequest) -> AgentExchange:
        model = wire_model(account, request.model)
        # The Run carries documents in UserMessage.selected_context (agent-protocol.md §3, [PYC]).
        request = await resolve_files(request, self.ctx.files, carries_pdf=True, dialect="agent")
        run = await build_run(request, self.ctx.images, model=model, max_mode=request.max_mode)
        single_call = request.HasField("parallel_tool_calls") and not request.parallel_tool_calls
        return AgentExchange(run.message, run.store, run.tools, max_calls=1 if single_call else None)

    def open(
        self, account: Account, exchange: Any, messages: AsyncIterator[Any], headers: Mapping[str, str]
    ) -> AsyncIterator[Any]:
        # One Run client per agent host: discovery may name a new host while the process runs.
        url = self.ctx.agent_url.rstrip("/")

        # Requests go uncompressed, as every client of the fact sheet sends them (§2.3).
        client = self.ctx.connect_client(account, AgentServiceClient, url, http2=True, gzip_requests=False)
        return client.run(messages, headers=headers)

    def classify(self, err: ConnectError) -> UpstreamError:
        return classify(err)

    async def _usable_models(self, account: Account) -> agent.GetUsableModelsResponse:
        try:
            return await self._models(account).get_usable_models(
                agent.GetUsableModelsRequest(), headers=self.headers(account), timeout_ms=30_000
            )
        except ConnectError as err:
            raise classify(err) from None

    async def available_models(self, account: Account) -> dict[str, ModelInfo]:
        """AiService/AvailableModels for the rich data (context windows, thinking, images), merged
        with the ids agent.v1 GetUsableModels offers the CLI identity (§5)."""
        usable = await self._usable_models(account)
        try:
            catalog = await self._ai(account).available_models(
                models_pb2.AvailableModelsRequest(),
                headers=ide_headers(account.token, self.ctx.ide_identity(account)),
                timeout_ms=30_000,
            )
            models = models_from_catalog(catalog)
        except ConnectError:
            models = {}  # the CLI list alone still routes
        for details in usable.models:
            if details.model_id not in models:
                name = details.display_name or details.model_id
                models[details.model_id] = ModelInfo(id=details.model_id, display_name=name)
        return models

    async def probe(self, account: Account) -> Probe:
        """GetUsableModels with the CLI identity: unary, runs no model, and is refused when Cursor
        does not accept the CLI version."""
        try:
            usable = await self._usable_models(account)
        except UpstreamError as err:
            if err.failure in (Failure.OUTDATED_CLIENT, Failure.BAD_REQUEST):
                return Probe(False, f"refused: {err.message}")
            raise
        return Probe(True, f"GetUsableModels answers the CLI identity ({len(usable.models)} models)")
