"""cursorgate.v1.ChatService: authenticate, validate, route, shape; errors become gRPC statuses."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from core.api.validate import validate_chat
from core.chat.aliases import AliasTable
from core.chat.answer import AnswerShaper, estimate_tokens, prompt_chars
from core.chat.catalog import ModelInfo, effort_variant
from core.chat.coalesce import coalesced
from core.chat.resolve import ModelResolver
from core.chat.structured import add_instruction, is_strict, strict_events, validate_format
from core.errors import Code, GatewayError, echo
from core.licensing.licenses import License, LicenseRegistry, key_prefix
from core.licensing.limits import LocalLimits, Reservation
from core.licensing.secrets import bearer
from core.observability.metrics import CoreMetrics
from core.pool.admission import Admission
from core.pool.drain import CallGate
from core.pool.router import Router
from core.store.meter import Meter, RequestSink
from core.upstream import instructions
from core.upstream.images import FETCH_OWNER
from cursorgate.v1 import chat_pb2, chat_pb2_grpc

if TYPE_CHECKING:  # imported only when Redis is configured (core/server.py)
    from core.shared.limits import SharedLimits
    from core.shared.state import SharedSlots

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
        metrics: CoreMetrics | None = None,
        gate: CallGate | None = None,
        shared_slots: SharedSlots | None = None,
        limits: LocalLimits | SharedLimits | None = None,
        admission: Admission | None = None,
    ) -> None:
        # The longest a request may run upstream, whatever deadline a gRPC caller sets (or none).
        self.max_deadline = max_deadline
        self.licenses = licenses
        self.router = router
        self.catalog = catalog
        self.request_log = request_log
        self.resolver = resolver or ModelResolver(router.pool, catalog, AliasTable())
        self.metrics = metrics
        # Counts calls in flight and refuses new ones while core drains (core/pool/drain.py).
        self.gate = gate if gate is not None else CallGate()
        # Per-license concurrency across replicas (Redis); None: this process' own count.
        self.shared_slots = shared_slots
        # Per-license RPM, TPM and token budgets (core/licensing/limits.py; in Redis with replicas).
        self.limits = limits if limits is not None else LocalLimits()
        # Upstream streams this core serves at once, and the queue for more (core/pool/admission.py).
        self.admission = admission if admission is not None else Admission(0, 0, 1.0)

    async def _use(self, lic: License, request: chat_pb2.ChatRequest, spend: Spend) -> None:
        """Uses the license for a call that holds its slots (so a call refused for want of one
        costs no quota): reserves it against the license's limits in `spend`, which the caller
        settles, and counts it against the quota."""
        spend.estimate = estimate_tokens(prompt_chars(request))
        spend.reservation = await self.limits.admit(lic, spend.estimate)
        await self.licenses.use(lic)  # refused (quota): the reservation is settled to nothing
        FETCH_OWNER.set(lic.id)  # image fetches are bounded per license
        if not request.request_id:
            request.request_id = f"chatcmpl-{uuid.uuid4().hex}"
        add_instruction(request)

    def _check(
        self,
        request: chat_pb2.ChatRequest,
        context: grpc.aio.ServicerContext[Any, Any],
        meter: Meter | None = None,
    ) -> tuple[License, str]:
        """Authenticate, validate and authorize without using the license (count_tokens too);
        rewrites `request.model` (and `max_mode`) to what will serve. `meter` learns who called
        before the checks run, so a refused call is logged under its license or key prefix."""
        credential = bearer(metadata_value(context, "authorization"))
        if meter is not None:
            meter.key_prefix = key_prefix(credential or "")
            meter.license = self.licenses.identify(credential)
        lic = self.licenses.authenticate(credential)
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
        return lic, served.requested

    @contextlib.asynccontextmanager
    async def _slot(self, lic: License) -> AsyncIterator[None]:
        """The license's slot, then one of this core's (admission control): a license over its
        own limit gets its 429 without taking a core slot from anyone."""
        if self.shared_slots is not None:
            async with self.shared_slots.hold(lic), self.admission.slot():
                yield
        else:
            with self.licenses.slot(lic):
                async with self.admission.slot():
                    yield

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
        if is_strict(request):  # validated, and repaired once, by core.chat.structured
            return strict_events(request, lambda r: self._round(r, context))
        return self._round(request, context)

    async def _round(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        """One answer: an attempt, and for a required tool call one more if none came."""
        if not must_call_tool(request):
            async for event in self._attempt(request, context):
                yield event
            return
        # Cursor has no switch that forces a tool call, only the instruction in the system
        # context. So the answer is held back until a call shows up; an answer without one is
        # dropped and asked for once more, with a firmer instruction. What the second attempt
        # answers is passed on as it is (text, if the model still will not call a tool).
        held: list[chat_pb2.ChatEvent] = []
        called = False
        attempt = self._attempt(request, context)
        async with contextlib.aclosing(attempt):  # type: ignore[type-var]
            async for event in attempt:
                if not called and event.WhichOneof("event") != "tool_call":
                    held.append(event)
                    continue
                if not called:
                    called = True
                    for earlier in held:
                        yield earlier
                yield event
        if called:
            return
        log.info("chat %s: a tool call was required and none came; asking once more", request.request_id)
        retry = chat_pb2.ChatRequest()
        retry.CopyFrom(request)
        retry.messages.add(role=chat_pb2.ROLE_SYSTEM).content.add(text=instructions.TOOL_RETRY)
        async for event in self._attempt(retry, context):
            yield event

    async def _attempt(
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
        await self.gate.admit(context)
        meter = Meter(self.request_log, stream=True, metrics=self.metrics)
        spend = Spend()
        requested = request.model
        try:
            lic, requested = self._check(request, context, meter)
            async with self._slot(lic):
                await self._use(lic, request, spend)
                meter.admitted = True
                # Deltas that pile up while gRPC writes merge into one message (core/chat/coalesce.py).
                events = coalesced(self._events(request, context))
                async with contextlib.aclosing(events):
                    async for event in events:
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
            spend.settle(self.limits, meter)
            log.debug("chat %s took %.3f s", request.request_id, time.monotonic() - started)

    async def Chat(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> chat_pb2.ChatResponse:
        await self.gate.admit(context)
        meter = Meter(self.request_log, stream=False, metrics=self.metrics)
        spend = Spend()
        requested = request.model
        try:
            lic, requested = self._check(request, context, meter)
            async with self._slot(lic):
                await self._use(lic, request, spend)
                meter.admitted = True
                events = metered(meter, self._events(request, context))
                response = await aggregate(request, events, requested)
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
            spend.settle(self.limits, meter)

    async def CountTokens(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> chat_pb2.CountTokensResponse:
        try:
            self._check(request, context)
            return chat_pb2.CountTokensResponse(input_tokens=estimate_tokens(prompt_chars(request)))
        except GatewayError as err:
            log.info("count_tokens failed: %s", Code.Name(err.code))
            await context.abort_with_status(err.to_status())
            raise  # unreachable: abort raises
        except Exception:
            log.exception("count_tokens failed unexpectedly")
            await context.abort_with_status(INTERNAL_ERROR.to_status())
            raise


async def metered(
    meter: Meter, events: AsyncIterator[chat_pb2.ChatEvent]
) -> AsyncIterator[chat_pb2.ChatEvent]:
    """The events, shown to the meter on their way (the time to first token of unary calls)."""
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            meter.observe(event)
            yield event


class Spend:
    """One call's reservation against its license's limits, settled when the call ends."""

    def __init__(self) -> None:
        self.reservation: Reservation | None = None
        self.estimate = 0

    def tokens(self, meter: Meter) -> int:
        """What the call used: the usage it reported; without one (it failed or was cancelled),
        the prompt's estimate once an answer had begun or the caller went away (the prompt had
        most likely reached Cursor), else nothing."""
        usage = meter.usage
        if usage.total_tokens or usage.prompt_tokens or usage.completion_tokens:
            return usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        return self.estimate if meter.first_answer_at or meter.outcome == "cancelled" else 0

    def settle(self, limits: LocalLimits | SharedLimits, meter: Meter) -> None:
        if self.reservation is not None:
            limits.settle(self.reservation, self.tokens(meter))


def must_call_tool(request: chat_pb2.ChatRequest) -> bool:
    """tool_choice "required" (Anthropic's "any") or a named tool."""
    mode = request.tool_choice.mode
    required = (chat_pb2.ToolChoice.MODE_REQUIRED, chat_pb2.ToolChoice.MODE_FUNCTION)
    return bool(request.tools) and mode in required


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
            response.stop_sequence = event.finish.stop_sequence
    response.content = "".join(text)
    response.reasoning = "".join(reasoning)
    response.tool_calls.extend(calls[i] for i in sorted(calls))
    return response
