"""The simulator checks what Cursor checks: called directly with the project's Connect client."""

from __future__ import annotations

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from aiserver.v1 import chat_pb2, models_pb2
from aiserver.v1.chat_connect import ChatServiceClient
from aiserver.v1.models_connect import AiServiceClient
from core.upstream.errors import Failure, classify
from core.upstream.headers import ClientIdentity, cursor_headers
from tests.procs import Stack


def chat_request(model: str = "gpt-5.2") -> chat_pb2.StreamUnifiedChatRequestWithTools:
    message = chat_pb2.ConversationMessage(
        text="hi", type=chat_pb2.ConversationMessage.MessageType.MESSAGE_TYPE_HUMAN
    )
    return chat_pb2.StreamUnifiedChatRequestWithTools(
        stream_unified_chat_request=chat_pb2.StreamUnifiedChatRequest(
            conversation=[message], model_details=chat_pb2.ModelDetails(model_name=model)
        )
    )


async def collect(stack: Stack, headers: dict[str, str], model: str = "gpt-5.2") -> list[str]:
    async with ChatServiceClient(stack.sim_url) as client:
        frames = client.stream_unified_chat_with_tools(chat_request(model), headers=headers)
        return [f.stream_unified_chat_response.text async for f in frames]


async def test_valid_request_streams(stack: Stack) -> None:
    headers = cursor_headers(stack.token, ClientIdentity(client_version="2.3.41"))
    assert "You said: hi" in "".join(await collect(stack, headers))


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        ({"authorization": "Bearer not-a-jwt"}, Failure.AUTH),
        ({"x-cursor-checksum": "garbage"}, Failure.BAD_REQUEST),
        ({"x-cursor-client-version": "0.9.0"}, Failure.OUTDATED_CLIENT),
    ],
)
async def test_bad_headers_are_refused(stack: Stack, change: dict[str, str], failure: Failure) -> None:
    headers = {**cursor_headers(stack.token, ClientIdentity(client_version="2.3.41")), **change}
    with pytest.raises(ConnectError) as info:
        await collect(stack, headers)
    assert classify(info.value).failure is failure


async def test_unknown_model_is_refused(stack: Stack) -> None:
    headers = cursor_headers(stack.token, ClientIdentity(client_version="2.3.41"))
    with pytest.raises(ConnectError) as info:
        await collect(stack, headers, model="gpt-0")
    assert info.value.code == Code.INVALID_ARGUMENT
    assert classify(info.value).failure is Failure.BAD_MODEL


async def test_available_models(stack: Stack) -> None:
    headers = cursor_headers(stack.token, ClientIdentity(client_version="2.3.41"))
    async with AiServiceClient(stack.sim_url) as client:
        reply = await client.available_models(models_pb2.AvailableModelsRequest(), headers=headers)
    names = {m.name: m for m in reply.models}
    assert names["claude-4.5-sonnet-thinking"].supports_thinking
    assert "composer-1" in reply.model_names
