"""A scripted, real `cursorgate.v1` gRPC server, and fixtures running the facade against it.

The model name picks the script:
  echo (or any unknown name)  the last user text, one word per event, then usage and finish
  think                       reasoning events, then text
  tools                       two streamed tool calls, finish_reason tool_calls
  length                      one text event, finish_reason length
  inspect                     answers with the ChatRequest and metadata it received, as JSON
  fail-<code>                 fails before any event with ErrorCode <code> (e.g. fail-rate_limited)
  bare-<status>               fails with that gRPC status (e.g. bare-unavailable) and no ErrorInfo
  midfail                     one text event, then UPSTREAM_ERROR
  stall                       one text event (streams only), then waits until cancelled
  silent                      waits until cancelled, before any event
Every call must carry `authorization: Bearer <LICENSE>`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
import pytest_asyncio
import uvicorn
from google.protobuf import any_pb2, json_format
from google.rpc import status_pb2

from cursorgate.v1 import chat_pb2, chat_pb2_grpc, errors_pb2, models_pb2, models_pb2_grpc
from facade.app import create_app
from facade.config import FacadeSettings

LICENSE = "sk-test-license"
ErrorCode = errors_pb2.ErrorCode

# ErrorCode -> the gRPC status it travels with (chat.proto's table).
STATUS_OF: dict[int, grpc.StatusCode] = {
    ErrorCode.ERROR_CODE_INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.ERROR_CODE_UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.ERROR_CODE_MODEL_NOT_ALLOWED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.ERROR_CODE_MODEL_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ERROR_CODE_RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.ERROR_CODE_QUOTA_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.ERROR_CODE_NO_ACCOUNT_AVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.ERROR_CODE_UPSTREAM_OUTDATED_CLIENT: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ERROR_CODE_UPSTREAM_AUTH: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ERROR_CODE_UPSTREAM_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.ERROR_CODE_UPSTREAM_ERROR: grpc.StatusCode.INTERNAL,
    ErrorCode.ERROR_CODE_INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.ERROR_CODE_OUTPUT_INVALID: grpc.StatusCode.INTERNAL,
    ErrorCode.ERROR_CODE_RESPONSE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ERROR_CODE_MAX_MODE_REQUIRED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ERROR_CODE_REQUEST_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.ERROR_CODE_STORE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.ERROR_CODE_OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

MODELS = [
    models_pb2.Model(id="echo", owned_by="cursor", created=1_700_000_000, display_name="Echo"),
    models_pb2.Model(id="think", owned_by="cursor", created=1_700_000_001, supports_thinking=True),
    models_pb2.Model(id="tools", owned_by="cursor", created=1_700_000_002, supports_tools=True),
    models_pb2.Model(id="vendor/with-slash", owned_by="vendor", created=1_700_000_003),
]

TOOL_DELTAS = [
    chat_pb2.ToolCallDelta(index=0, id="call_1", name="get_weather", arguments=""),
    chat_pb2.ToolCallDelta(index=0, arguments='{"city": '),
    chat_pb2.ToolCallDelta(index=0, arguments='"Paris"}'),
    chat_pb2.ToolCallDelta(index=1, id="call_2", name="get_time", arguments='{"tz": "UTC"}'),
]


def error_code_named(name: str) -> int:
    return int(ErrorCode.Value(f"ERROR_CODE_{name.upper()}"))


def last_user_text(request: chat_pb2.ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role == chat_pb2.ROLE_USER:
            return "".join(part.text for part in message.content if part.WhichOneof("part") == "text")
    return ""


def usage(completion_tokens: int, reasoning_tokens: int = 0) -> chat_pb2.Usage:
    return chat_pb2.Usage(
        prompt_tokens=7,
        completion_tokens=completion_tokens,
        total_tokens=7 + completion_tokens,
        reasoning_tokens=reasoning_tokens,
    )


@dataclass
class FakeCore:
    """Records what it saw, so tests can check forwarding and cancellation."""

    port: int = 0
    requests: list[chat_pb2.ChatRequest] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    server: grpc.aio.Server | None = None

    async def start(self) -> int:
        self.server = grpc.aio.server()
        chat_pb2_grpc.add_ChatServiceServicer_to_server(_ChatService(self), self.server)
        models_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)

    async def wait_cancelled(self, model: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while model not in self.cancelled:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


async def abort(
    context: grpc.aio.ServicerContext[Any, Any], code: int, message: str, **extra: Any
) -> NoReturn:
    info = errors_pb2.ErrorInfo(code=code, message=message, **extra)  # type: ignore[arg-type]
    detail = any_pb2.Any()
    detail.Pack(info)
    grpc_code = STATUS_OF[code]
    status = status_pb2.Status(code=grpc_code.value[0], message=message, details=[detail])
    await context.abort(
        grpc_code, message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
    )
    raise AssertionError("unreachable")


async def authorize(fake: FakeCore, context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    fake.metadata.append(metadata)
    if metadata.get("authorization") != f"Bearer {LICENSE}":
        await abort(context, ErrorCode.ERROR_CODE_UNAUTHENTICATED, "Invalid license.")
    return metadata


async def fail_early(model: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if model.startswith("bare-"):
        status = grpc.StatusCode[model.removeprefix("bare-").upper()]
        await context.abort(status, "connection refused (internal detail)")
    if model.startswith("fail-"):
        code = error_code_named(model.removeprefix("fail-"))
        extra: dict[str, Any] = {"retry_after_ms": 1500} if code == ErrorCode.ERROR_CODE_RATE_LIMITED else {}
        if code == ErrorCode.ERROR_CODE_INVALID_REQUEST:
            extra["param"] = "messages[0].content"
        await abort(context, code, f"scripted {model}", **extra)


def script(request: chat_pb2.ChatRequest, metadata: dict[str, str]) -> list[chat_pb2.ChatEvent]:
    """The events of a successful answer, `usage` then `finish` last, as core sends them."""
    model = request.model
    events: list[chat_pb2.ChatEvent] = []
    finish = chat_pb2.FINISH_REASON_STOP
    reasoning_tokens = 0
    if model == "think":
        for piece in ("Let me ", "think."):
            events.append(chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text=piece)))
        events.append(chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text="42")))
        reasoning_tokens = 3
    elif model == "tools":
        events.extend(chat_pb2.ChatEvent(tool_call=delta) for delta in TOOL_DELTAS)
        finish = chat_pb2.FINISH_REASON_TOOL_CALLS
    elif model == "length":
        events.append(chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text="cut")))
        finish = chat_pb2.FINISH_REASON_LENGTH
    elif model == "inspect":
        seen = {"request": json_format.MessageToDict(request), "metadata": metadata}
        events.append(chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=json.dumps(seen))))
    else:
        words = last_user_text(request).split(" ")
        events.extend(
            chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=word if i == 0 else f" {word}"))
            for i, word in enumerate(words)
        )
    events.append(chat_pb2.ChatEvent(usage=usage(len(events), reasoning_tokens)))
    events.append(chat_pb2.ChatEvent(finish=chat_pb2.Finish(reason=finish)))
    return events


def aggregate(events: list[chat_pb2.ChatEvent], model: str) -> chat_pb2.ChatResponse:
    response = chat_pb2.ChatResponse(model=model)
    calls: dict[int, chat_pb2.ToolCall] = {}
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "text":
            response.content += event.text.text
        elif kind == "reasoning":
            response.reasoning += event.reasoning.text
        elif kind == "tool_call":
            call = calls.setdefault(event.tool_call.index, chat_pb2.ToolCall())
            call.id = call.id or event.tool_call.id
            call.name = call.name or event.tool_call.name
            call.arguments += event.tool_call.arguments
        elif kind == "usage":
            response.usage.CopyFrom(event.usage)
        elif kind == "finish":
            response.finish_reason = event.finish.reason
    response.tool_calls.extend(calls[i] for i in sorted(calls))
    return response


class _ChatService(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, fake: FakeCore) -> None:
        self.fake = fake

    async def StreamChat(
        self,
        request: chat_pb2.ChatRequest,
        context: grpc.aio.ServicerContext[chat_pb2.ChatRequest, AsyncIterator[chat_pb2.ChatEvent]],
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        metadata = await authorize(self.fake, context)
        self.fake.requests.append(request)
        await fail_early(request.model, context)
        if request.model == "silent":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.fake.cancelled.append(request.model)
                raise
        if request.model in {"midfail", "stall"}:
            yield chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text="partial"))
            if request.model == "midfail":
                await abort(context, ErrorCode.ERROR_CODE_UPSTREAM_ERROR, "upstream broke mid-answer")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.fake.cancelled.append(request.model)
                raise
        for event in script(request, metadata):
            yield event

    async def Chat(
        self,
        request: chat_pb2.ChatRequest,
        context: grpc.aio.ServicerContext[chat_pb2.ChatRequest, Awaitable[chat_pb2.ChatResponse]],
    ) -> chat_pb2.ChatResponse:
        metadata = await authorize(self.fake, context)
        self.fake.requests.append(request)
        await fail_early(request.model, context)
        if request.model == "midfail":
            await abort(context, ErrorCode.ERROR_CODE_UPSTREAM_ERROR, "upstream broke mid-answer")
        if request.model == "stall":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.fake.cancelled.append(request.model)
                raise
        response = aggregate(script(request, metadata), request.model)
        response.id = request.request_id
        return response

    async def CountTokens(
        self,
        request: chat_pb2.ChatRequest,
        context: grpc.aio.ServicerContext[chat_pb2.ChatRequest, Awaitable[chat_pb2.CountTokensResponse]],
    ) -> chat_pb2.CountTokensResponse:
        await authorize(self.fake, context)
        self.fake.requests.append(request)
        await fail_early(request.model, context)
        return chat_pb2.CountTokensResponse(input_tokens=len(request.messages))


class _ModelService(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, fake: FakeCore) -> None:
        self.fake = fake

    async def ListModels(
        self,
        request: models_pb2.ListModelsRequest,
        context: grpc.aio.ServicerContext[
            models_pb2.ListModelsRequest, Awaitable[models_pb2.ListModelsResponse]
        ],
    ) -> models_pb2.ListModelsResponse:
        await authorize(self.fake, context)
        return models_pb2.ListModelsResponse(models=MODELS)


# --- fixtures ---------------------------------------------------------------------------------


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class RunningFacade:
    url: str
    settings: FacadeSettings


async def serve_facade(settings: FacadeSettings) -> AsyncIterator[RunningFacade]:
    """Runs the real app under uvicorn on an ephemeral loopback port, in this event loop."""
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), http="httptools", log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield RunningFacade(url=f"http://127.0.0.1:{port}", settings=settings)
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest_asyncio.fixture(name="fake_core", scope="session", loop_scope="session")
async def fake_core_fixture() -> AsyncIterator[FakeCore]:
    fake = FakeCore()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest_asyncio.fixture(name="facade", scope="session", loop_scope="session")
async def facade_fixture(fake_core: FakeCore) -> AsyncIterator[RunningFacade]:
    settings = FacadeSettings(core_address=f"127.0.0.1:{fake_core.port}", max_body_bytes=64 * 1024)
    async for running in serve_facade(settings):
        yield running
