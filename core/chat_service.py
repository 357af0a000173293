"""cursorgate.v1.ChatService: authenticate, validate, route, shape; errors become gRPC statuses."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from core.aliases import AliasTable
from core.answer import AnswerShaper
from core.catalog import ModelInfo, effort_variant
from core.errors import Code, GatewayError, echo
from core.licenses import License, LicenseRegistry
from core.resolve import ModelResolver
from core.router import Router
from core.secrets import bearer
from core.store.meter import Meter, RequestSink
from core.structured import add_instruction, is_strict, strict_events, validate_format
from core.upstream.images import FETCH_OWNER
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
        resolver: ModelResolver | None = None,
        max_deadline: float | None = None,
    ) -> None:
        # The longest a request may run upstream, whatever deadline a gRPC caller sets (or none).
        self.max_deadline = max_deadline
        self.licenses = licenses
        self.router = router
        self.catalog = catalog
        self.request_log = request_log
        self.resolver = resolver or ModelResolver(router.pool, catalog, AliasTable())

    async def _admit(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[License, str]:
        """Checks the call and rewrites `request.model` (and `max_mode`) to what will serve;
        returns the license and the model name the caller asked for."""
        lic = self.licenses.authenticate(bearer(metadata_value(context, "authorization")))
        validate_chat(request)
        validate_format(request)
        served = self.resolver.resolve(request.model, request.max_mode)
        request.model = served.model
        if served.max_mode:
            request.max_mode = True
        self._resolve_variant(request)
        if request.model not in self.catalog and not self.router.pool.offered_anywhere(request.model):
            shown = f"'{echo(served.requested)}'"
            if served.via:
                shown += f" (an alias of '{echo(request.model)}')"
            raise GatewayError(
                Code.ERROR_CODE_MODEL_NOT_FOUND,
                f"The model {shown} does not exist or is not offered by any account.",
                param="model",
            )
        self.licenses.authorize(lic, request.model, served.via)
        self.resolver.check_max_mode(served, request.model, request.max_mode)
        await self.licenses.use(lic)
        FETCH_OWNER.set(lic.id)  # image fetches are bounded per license
        if not request.request_id:
            request.request_id = f"chatcmpl-{uuid.uuid4().hex}"
        add_instruction(request)
        return lic, served.requested

    def _resolve_variant(self, request: chat_pb2.ChatRequest) -> None:
        if request.reasoning_effort == chat_pb2.REASONING_EFFORT_UNSPECIFIED:
            return
        effort = (
            chat_pb2.ReasoningEffort.Name(request.reasoning_effort).removeprefix("REASONING_EFFORT_").lower()
        )
        known = set(self.catalog).union(*(a.models or () for a in self.router.pool.all()))
        request.model = effort_variant(request.model, effort, known)

    def _time_remaining(self, context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
        remaining: float | None = context.time_remaining()
        if self.max_deadline is None:
            return remaining
        return self.max_deadline if remaining is None else min(remaining, self.max_deadline)

    def _events(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        if is_strict(request):  # validated, and repaired once, by core.structured
            return strict_events(request, lambda r: self._round(r, context))
        return self._round(request, context)

    async def _round(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        """One upstream answer, shaped: stop sequences, max_tokens, usage and finish."""
        shaper = AnswerShaper(request)
        upstream = self.router.stream(request, self._time_remaining(context))
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
        meter = Meter(self.request_log, stream=True)
        requested = request.model
        try:
            meter.license, requested = await self._admit(request, context)
            with self.licenses.slot(meter.license):
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
            meter.finish(request.model, requested)
            log.debug("chat %s took %.3f s", request.request_id, time.monotonic() - started)

    async def Chat(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> chat_pb2.ChatResponse:
        meter = Meter(self.request_log, stream=False)
        requested = request.model
        try:
            meter.license, requested = await self._admit(request, context)
            with self.licenses.slot(meter.license):
                response = await aggregate(request, self._events(request, context), requested)
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
            meter.finish(request.model, requested)


async def aggregate(
    request: chat_pb2.ChatRequest, events: AsyncIterator[chat_pb2.ChatEvent], requested: str = ""
) -> chat_pb2.ChatResponse:
    """Folds a stream of events into one answer (tool call fragments joined per index).
    `model` echoes what the caller asked for (as OpenAI does); `served_model` is what served."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, chat_pb2.ToolCall] = {}
    response = chat_pb2.ChatResponse(
        id=request.request_id, model=requested or request.model, served_model=request.model
    )
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
