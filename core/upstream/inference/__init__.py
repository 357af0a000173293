"""The inference dialect: aiserver.v1.InferenceService/RunInference, IDE 3.18 identity.

Bidi over HTTP/2 (docs/cursor-protocol.md, "RunInference"): run_request -> run_ready ->
invoke_model (the whole conversation, tools, sampling) -> invocation_response parts ->
invocation_end -> finish_run. The client owns the loop, so this maps one to one onto chat APIs:
sampling parameters reach the model and Cursor's token counts reach the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError

from aiserver.v1 import inference_pb2 as inf
from aiserver.v1 import models_pb2
from aiserver.v1.inference_connect import InferenceServiceClient
from aiserver.v1.models_connect import AiServiceClient
from core.chat.catalog import ModelInfo
from core.pool.accounts import Account
from core.upstream.base import PROBE_MODEL, DialectName, Probe
from core.upstream.catalog import models_from_catalog, wire_model
from core.upstream.context import UpstreamContext
from core.upstream.errors import Failure, UpstreamError, classify
from core.upstream.headers import ide_headers
from core.upstream.inference.events import EventMapper, invocation_error
from core.upstream.inference.request import build
from core.upstream.prompt import resolve_files
from cursorgate.v1 import chat_pb2

log = logging.getLogger("cursorgate.upstream")

Frame = inf.RunInferenceServerMessage
FINISH_RUN = inf.RunInferenceClientMessage(finish_run=inf.RunInferenceFinishRun())
# How long a probe waits for run_ready.
PROBE_TIMEOUT_MS = 15_000


class InferenceExchange:
    __slots__ = ("_invoke", "_invoked", "_mapper", "_run", "done", "outbox")

    def __init__(
        self, run: inf.RunInferenceClientMessage, invoke: inf.RunInferenceClientMessage, mapper: EventMapper
    ) -> None:
        self._run = run
        self._invoke = invoke
        self._invoked = False
        self._mapper = mapper
        self.outbox: list[Any] = []
        self.done = False

    def opening(self) -> list[Any]:
        return [self._run]

    def feed(self, frame: Frame) -> list[chat_pb2.ChatEvent]:
        kind = frame.WhichOneof("message")
        if kind == "invocation_response":  # the hot path
            return self._mapper.feed(frame.invocation_response.response)
        if kind == "run_ready":
            if not self._invoked:
                self._invoked = True
                self.outbox.append(self._invoke)
            return []
        if kind == "invocation_end":
            end = frame.invocation_end
            if end.HasField("error"):
                raise invocation_error(end.error)
            self.outbox.append(FINISH_RUN)
            self.done = True
            return self._mapper.usage()
        if kind is None:
            self._mapper.skipped += 1
        return []  # heartbeat: liveness only (the driver's watchdog already saw a frame)

    def heartbeat(self) -> Any | None:
        # RunInferenceClientMessage has no heartbeat ([OMP-new]); the server sends them.
        return None

    def finish(self) -> list[chat_pb2.ChatEvent]:
        if self._mapper.skipped:
            log.info("RunInference: skipped %d message(s) this gateway does not know", self._mapper.skipped)
        if not self.done:
            raise UpstreamError(Failure.PROTOCOL, "Cursor ended the run before the model call ended.")
        return self._mapper.finish()

    @property
    def skipped(self) -> int:
        return self._mapper.skipped


class InferenceDialect:
    name = DialectName.INFERENCE
    bidi = True
    # The driver's keep-alive timer; heartbeat() sends nothing (no client heartbeat exists).
    heartbeat_s = 5.0

    def __init__(self, ctx: UpstreamContext) -> None:
        self.ctx = ctx
        self._url = ctx.settings.upstream_url.rstrip("/")

    # Stubs per account route (core/upstream/context.py): each proxy has its own HTTP clients.

    def _inference(self, account: Account) -> InferenceServiceClient:
        # HTTP/2 always (h2c prior knowledge for http://); IDE 3.18 gzips its requests.
        return self.ctx.connect_client(
            account, InferenceServiceClient, self._url, http2=True, gzip_requests=True
        )

    def _ai(self, account: Account) -> AiServiceClient:
        return self.ctx.connect_client(account, AiServiceClient, self._url, http2=False, gzip_requests=True)

    def headers(self, account: Account) -> dict[str, str]:
        return ide_headers(account.token, self.ctx.ide_identity(account))

    async def exchange(self, account: Account, request: chat_pb2.ChatRequest) -> InferenceExchange:
        # RunInference carries files as message parts (agent-protocol.md §9, [OMP-new]).
        request = await resolve_files(request, self.ctx.files, carries_pdf=True, dialect="inference")
        run, invoke = await build(request, self.ctx.images, model=wire_model(account, request.model))
        single_call = request.HasField("parallel_tool_calls") and not request.parallel_tool_calls
        return InferenceExchange(run, invoke, EventMapper(max_calls=1 if single_call else None))

    def open(
        self, account: Account, exchange: Any, messages: AsyncIterator[Any], headers: Mapping[str, str]
    ) -> AsyncIterator[Any]:
        return self._inference(account).run_inference(messages, headers=headers)

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
        """Open a run for the probe model, wait for run_ready, then finish_run and read the stream
        to its end: no model is ever invoked."""
        outbox: asyncio.Queue[inf.RunInferenceClientMessage | None] = asyncio.Queue()
        run = inf.RunInferenceRunRequest(
            conversation_id=str(uuid.uuid4()),
            requested_model=inf.InferenceRequestedModel(model_id=PROBE_MODEL),
        )
        outbox.put_nowait(inf.RunInferenceClientMessage(run_request=run))
        stream = self._inference(account).run_inference(
            _drain(outbox), headers=self.headers(account), timeout_ms=PROBE_TIMEOUT_MS
        )
        ready = False
        try:
            async for frame in stream:
                kind = frame.WhichOneof("message")
                if kind == "run_ready" and not ready:
                    ready = True
                    outbox.put_nowait(FINISH_RUN)
                    outbox.put_nowait(None)  # half-close: Cursor ends the run
                elif kind == "invocation_end" and frame.invocation_end.HasField("error"):
                    return self._judge(invocation_error(frame.invocation_end.error))
        except ConnectError as err:
            if ready:  # the answer was in before the run's end went wrong
                return Probe(True, "RunInference answers (run_ready)")
            if err.code == ConnectCode.UNIMPLEMENTED:
                return Probe(False, "RunInference is not offered (unimplemented)")
            return self._judge(classify(err))
        finally:
            outbox.put_nowait(None)
            with contextlib.suppress(ConnectError):
                await stream.aclose()  # type: ignore[attr-defined]
        if ready:
            return Probe(True, "RunInference answers (run_ready)")
        return Probe(False, "RunInference ended without run_ready")

    @staticmethod
    def _judge(failure: UpstreamError) -> Probe:
        if failure.failure in (Failure.BAD_MODEL, Failure.BAD_REQUEST):
            return Probe(True, "RunInference answers (the probe model was refused as unknown)")
        if failure.failure is Failure.OUTDATED_CLIENT:
            return Probe(False, f"refused: {failure.message}")
        raise failure


async def _drain(outbox: asyncio.Queue[inf.RunInferenceClientMessage | None]) -> AsyncIterator[Any]:
    while (message := await outbox.get()) is not None:
        yield message
