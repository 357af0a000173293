"""Internal gRPC callers: core's API with grpcio stubs only (health, reflection, chat, models)."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from core.errors import error_info_from_status
from cursorgate.v1 import chat_pb2, chat_pb2_grpc, errors_pb2, models_pb2, models_pb2_grpc
from tests.procs import Stack

pytestmark = pytest.mark.every_dialect


def user(text: str) -> chat_pb2.Message:
    return chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text=text)])


async def test_health_serving(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cursorgate.v1.ChatService", "cursorgate.v1.ModelService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_services(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
            assert {
                "cursorgate.v1.ChatService",
                "cursorgate.v1.ModelService",
                "grpc.health.v1.Health",
            } <= names
            break


async def test_stream_chat_events(stack: Stack) -> None:
    metadata = (("authorization", f"Bearer {stack.license}"),)
    request = chat_pb2.ChatRequest(model="claude-4.5-sonnet-thinking", messages=[user("grpc marker-55")])
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        events = [e async for e in stub.StreamChat(request, metadata=metadata)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "reasoning"
    assert kinds[-2:] == ["usage", "finish"]
    assert "grpc marker-55" in "".join(e.text.text for e in events if e.HasField("text"))
    assert events[-1].finish.reason == chat_pb2.FINISH_REASON_STOP


async def test_unary_chat_aggregates(stack: Stack) -> None:
    metadata = (("authorization", f"Bearer {stack.license}"),)
    request = chat_pb2.ChatRequest(model="gpt-5.2", messages=[user("unary marker-66")])
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        reply = await chat_pb2_grpc.ChatServiceStub(channel).Chat(request, metadata=metadata)
    assert "unary marker-66" in reply.content
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert reply.usage.total_tokens > 0


@pytest.mark.parametrize(
    ("license", "request_", "status", "code"),
    [
        (
            "sk-nope",
            chat_pb2.ChatRequest(model="gpt-5.2", messages=[user("x")]),
            grpc.StatusCode.UNAUTHENTICATED,
            errors_pb2.ERROR_CODE_UNAUTHENTICATED,
        ),
        (
            None,
            chat_pb2.ChatRequest(model="gpt-5.2"),
            grpc.StatusCode.INVALID_ARGUMENT,
            errors_pb2.ERROR_CODE_INVALID_REQUEST,
        ),
        (
            None,
            chat_pb2.ChatRequest(model="nope", messages=[user("x")]),
            grpc.StatusCode.NOT_FOUND,
            errors_pb2.ERROR_CODE_MODEL_NOT_FOUND,
        ),
    ],
)
async def test_errors_carry_typed_info(
    stack: Stack, license: str | None, request_: chat_pb2.ChatRequest, status: grpc.StatusCode, code: int
) -> None:
    metadata = (("authorization", f"Bearer {license or stack.license}"),)
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Chat(request_, metadata=metadata)
    assert info.value.code() == status
    detail = error_info_from_status(rpc_status.from_call(info.value))
    assert detail is not None and detail.code == code


async def test_list_models(stack: Stack) -> None:
    metadata = (("authorization", f"Bearer {stack.license}"),)
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        reply = await models_pb2_grpc.ModelServiceStub(channel).ListModels(
            models_pb2.ListModelsRequest(), metadata=metadata
        )
    thinking = {m.id: m.supports_thinking for m in reply.models}
    assert thinking["claude-4.5-sonnet-thinking"] is True
    assert thinking["claude-4.5-sonnet"] is False
