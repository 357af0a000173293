"""cursorgate.v1.ChatService: authenticate, validate, route, shape; errors become gRPC statuses."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from core.answer import AnswerShaper
from core.catalog import ModelInfo, effort_variant
from core.drain import CallGate
from core.errors import Code, GatewayError
from core.licenses import License, LicenseRegistry
from core.metrics import CoreMetrics
from core.router import Router
from core.secrets import bearer
from core.shared import SharedSlots
from core.store.meter import Meter, RequestSink
from core.validate import validate_chat
from cursorgate.v1 import chat_pb2, chat_pb2_grpc

log = logging.getLogger("cursorgate.chat")

INTERNAL_ERROR = GatewayError(
    Code.ERROR_CODE_INTERNAL, "The gateway failed unexpectedly; the error is logged."
)


def metadata_value(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode()
    return None


class ChatService(chat_pb2_grpc.ChatServiceServicer):
    def __init__(
        self,
        licenses: LicenseRegistry,
        router: Router,
        catalog: dict[str, ModelInfo],
        request_log: RequestSink | None = None,
        metrics: CoreMetrics | None = None,
        gate: CallGate | None = None,
        shared_slots: SharedSlots | None = None,
    ) -> None:
        self.licenses = licenses
        self.router = router
        self.catalog = catalog
        self.request_log = request_log
        self.metrics = metrics
        # Counts calls in flight and refuses new ones while core drains (core/drain.py).
        self.gate = gate if gate is not None else CallGate()
        # Per-license concurrency across replicas (Redis); None: this process' own count.
        self.shared_slots = shared_slots

    def _admit(self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]) -> License:
        lic = self.licenses.authenticate(bearer(metadata_value(context, "authorization")))
        validate_chat(request)
        self._resolve_variant(request)
        if request.model not in self.catalog and not self.router.pool.offered_anywhere(request.model):
            raise GatewayError(
                Code.ERROR_CODE_MODEL_NOT_FOUND,
                f"The model '{request.model}' does not exist or is not offered by any account.",
                param="model",
            )
        self.licenses.authorize(lic, request.model)
        self.licenses.record_use(lic)
        if not request.request_id:
            request.request_id = f"chatcmpl-{uuid.uuid4().hex}"
        return lic

    @contextlib.asynccontextmanager
    async def _slot(self, lic: License) -> AsyncIterator[None]:
        if self.shared_slots is not None:
            async with self.shared_slots.hold(lic):
                yield
        else:
            with self.licenses.slot(lic):
                yield

    def _resolve_variant(self, request: chat_pb2.ChatRequest) -> None:
        if request.reasoning_effort == chat_pb2.REASONING_EFFORT_UNSPECIFIED:
            return
        effort = (
            chat_pb2.ReasoningEffort.Name(request.reasoning_effort).removeprefix("REASONING_EFFORT_").lower()
        )
        known = set(self.catalog).union(*(a.models or () for a in self.router.pool.all()))
        request.model = effort_variant(request.model, effort, known)

    async def _events(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        shaper = AnswerShaper(request)
        upstream = self.router.stream(request, context.time_remaining())
        async with contextlib.aclosing(upstream):  # type: ignore[type-var]
            async for event in upstream:
                for out in shaper.feed(event):
                    yield out
                if shaper.done:
                    break  # stop sequence or max_tokens: closes the upstream stream
        for out in shaper.finish():
            yield out

    async def StreamChat(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        started = time.monotonic()
        await self.gate.admit(context)
        meter = Meter(self.request_log, stream=True, metrics=self.metrics)
        try:
            meter.license = self._admit(request, context)
            async with self._slot(meter.license):
                async for event in self._events(request, context):
                    meter.observe(event)
                    yield event
            meter.outcome = "ok"
        except GatewayError as err:
            meter.outcome = Code.Name(err.code)
            log.info("chat %s failed: %s", request.request_id or "-", Code.Name(err.code))
            await context.abort_with_status(err.to_status())
        except Exception:
            # A bug, not a gateway failure: log it here, and tell the caller nothing internal.
            meter.outcome = Code.Name(Code.ERROR_CODE_INTERNAL)
            log.exception("chat %s failed unexpectedly", request.request_id or "-")
            await context.abort_with_status(INTERNAL_ERROR.to_status())
        finally:
            meter.finish(request.model)
            log.debug("chat %s took %.3f s", request.request_id, time.monotonic() - started)

    async def Chat(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> chat_pb2.ChatResponse:
        await self.gate.admit(context)
        meter = Meter(self.request_log, stream=False, metrics=self.metrics)
        try:
            meter.license = self._admit(request, context)
            async with self._slot(meter.license):
                response = await aggregate(request, self._events(request, context))
            meter.usage.CopyFrom(response.usage)
            meter.outcome = "ok"
            return response
        except GatewayError as err:
            meter.outcome = Code.Name(err.code)
            log.info("chat %s failed: %s", request.request_id or "-", Code.Name(err.code))
            await context.abort_with_status(err.to_status())
            raise  # unreachable: abort raises
        except Exception:
            # A bug, not a gateway failure: log it here, and tell the caller nothing internal.
            meter.outcome = Code.Name(Code.ERROR_CODE_INTERNAL)
            log.exception("chat %s failed unexpectedly", request.request_id or "-")
            await context.abort_with_status(INTERNAL_ERROR.to_status())
        finally:
            meter.finish(request.model)


async def aggregate(
    request: chat_pb2.ChatRequest, events: AsyncIterator[chat_pb2.ChatEvent]
) -> chat_pb2.ChatResponse:
    """Folds a stream of events into one answer (tool call fragments joined per index)."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, chat_pb2.ToolCall] = {}
    response = chat_pb2.ChatResponse(id=request.request_id, model=request.model)
    async for event in events:
        kind = event.WhichOneof("event")
        if kind == "text":
            text.append(event.text.text)
        elif kind == "reasoning":
            reasoning.append(event.reasoning.text)
        elif kind == "tool_call":
            delta = event.tool_call
            call = calls.setdefault(delta.index, chat_pb2.ToolCall())
            call.id = call.id or delta.id
            call.name = call.name or delta.name
            call.arguments += delta.arguments
        elif kind == "usage":
            response.usage.CopyFrom(event.usage)
        elif kind == "finish":
            response.finish_reason = event.finish.reason
    response.content = "".join(text)
    response.reasoning = "".join(reasoning)
    response.tool_calls.extend(calls[i] for i in sorted(calls))
    return response
