"""Internal gRPC callers get tools, reasoning and images through cursorgate.v1 alone."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import struct_pb2

from cursorgate.v1 import chat_pb2, chat_pb2_grpc
from tests.procs import Stack

pytestmark = pytest.mark.every_dialect


def weather_tool() -> chat_pb2.Tool:
    schema = struct_pb2.Struct()
    schema.update({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    return chat_pb2.Tool(name="get_weather", description="Weather in a city", parameters=schema)


def user(text: str) -> chat_pb2.Message:
    return chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text=text)])


async def test_tool_round_trip_over_grpc(stack: Stack) -> None:
    metadata = (("authorization", f"Bearer {stack.license}"),)
    question = user("Please use get_weather for Rome")
    request = chat_pb2.ChatRequest(model="gpt-5.2", messages=[question], tools=[weather_tool()])
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        events = [e async for e in stub.StreamChat(request, metadata=metadata)]
        deltas = [e.tool_call for e in events if e.HasField("tool_call")]
        assert deltas[0].id and deltas[0].name == "get_weather"
        arguments = "".join(d.arguments for d in deltas)
        assert json.loads(arguments)["city"]
        assert events[-1].finish.reason == chat_pb2.FINISH_REASON_TOOL_CALLS

        call = chat_pb2.ToolCall(id=deltas[0].id, name="get_weather", arguments=arguments)
        follow_up = chat_pb2.ChatRequest(
            model="gpt-5.2",
            tools=[weather_tool()],
            messages=[
                question,
                chat_pb2.Message(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[call]),
                chat_pb2.Message(
                    role=chat_pb2.ROLE_TOOL,
                    tool_call_id=call.id,
                    content=[chat_pb2.ContentPart(text="sunny, 25C")],
                ),
            ],
        )
        answer = await stub.Chat(follow_up, metadata=metadata)
    assert "sunny, 25C" in answer.content
    assert answer.finish_reason == chat_pb2.FINISH_REASON_STOP


async def test_forged_tool_call_id_is_refused_upstream(stack: Stack) -> None:
    """The simulator, like Cursor, only accepts results for calls it made."""
    metadata = (("authorization", f"Bearer {stack.license}"),)
    forged = chat_pb2.ToolCall(id="toolu_sim0_000000000000", name="get_weather", arguments="{}")
    request = chat_pb2.ChatRequest(
        model="gpt-5.2",
        tools=[weather_tool()],
        messages=[
            user("weather?"),
            chat_pb2.Message(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[forged]),
            chat_pb2.Message(
                role=chat_pb2.ROLE_TOOL, tool_call_id=forged.id, content=[chat_pb2.ContentPart(text="x")]
            ),
        ],
    )
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await chat_pb2_grpc.ChatServiceStub(channel).Chat(request, metadata=metadata)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
