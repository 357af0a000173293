"""The agent dialect end to end, for what only it has: real usage from turn_ended, Cursor's own
tools rejected, interaction queries answered, the CLI identity, HTTP/2 only, and a simulator that
fails a Run loudly when a client leaves Cursor's requests unanswered."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pyqwest
import pytest
from connectrpc.errors import ConnectError
from openai.types.chat import ChatCompletionMessageParam

from agent.v1 import agent_pb2 as agent
from agent.v1.agent_connect import AgentServiceClient
from core.upstream.errors import Failure, classify
from tests.procs import Stack, start_stack

REPLY_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"CURSORGATE_SIMULATOR_AGENT_REPLY_TIMEOUT": str(REPLY_TIMEOUT_S)}
    stack = start_stack(tmp_path_factory.mktemp("agent"), env, dialect="agent")
    yield stack
    stack.stop()


@pytest.fixture
def client(gateway: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.license, max_retries=0)


def tokens(chars: int) -> int:
    """The simulator's documented rule for the counts its model reports: 3 characters a token."""
    return -(-chars // 3)


# The conversation and the answer the simulator gives it ("Simulated <model> answer. You said: ...").
HISTORY: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "a"},
    {"role": "assistant", "content": "b"},
    {"role": "user", "content": "usage probe"},
]
ANSWER = "Simulated gpt-5.2 answer. You said: usage probe"
# Each message counts its text plus 8 characters; with more than two messages half the prompt is
# reported as read from the cache.
PROMPT = tokens((1 + 8) + (1 + 8) + (11 + 8))


def test_usage_from_turn_ended_reaches_openai_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-5.2", messages=HISTORY)
    assert reply.choices[0].message.content == ANSWER
    usage = reply.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT, tokens(len(ANSWER)))
    assert usage.total_tokens == PROMPT + tokens(len(ANSWER))
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == PROMPT // 2


def test_usage_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-5.2",
            messages=HISTORY,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT, tokens(len(ANSWER)))


@pytest.mark.parametrize("kind", ["read", "shell", "write", "delete", "ls", "grep", "fetch", "unknown"])
def test_cursors_own_tools_are_rejected_and_the_answer_completes(client: openai.OpenAI, kind: str) -> None:
    reply = client.chat.completions.create(
        model="gpt-5.2", messages=[{"role": "user", "content": f"look around\nsim: builtin={kind}"}]
    )
    assert reply.choices[0].message.content and "look around" in reply.choices[0].message.content


@pytest.mark.parametrize("kind", ["web_search", "switch_mode", "unknown"])
def test_interaction_queries_are_answered(client: openai.OpenAI, kind: str) -> None:
    reply = client.chat.completions.create(
        model="gpt-5.2", messages=[{"role": "user", "content": f"search\nsim: query={kind}"}]
    )
    assert reply.choices[0].finish_reason == "stop"


def test_runs_carry_the_cli_identity(client: openai.OpenAI, gateway: Stack) -> None:
    client.chat.completions.create(model="gpt-5.2", messages=[{"role": "user", "content": "who am i"}])
    entry = gateway.chat_requests()[-1]
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    assert entry["dialect"] == "agent"
    assert headers["x-cursor-client-type"] == "cli"
    assert headers["x-cursor-client-version"].startswith("cli-20")
    assert "x-cursor-checksum" not in headers
    assert headers["content-type"] == "application/connect+proto"


def test_http1_is_refused_with_464(gateway: Stack) -> None:
    response = httpx.post(
        f"{gateway.sim_url}/agent.v1.AgentService/Run",
        content=b"",
        headers={"content-type": "application/connect+proto"},
    )
    assert response.status_code == 464


def _raw_client(gateway: Stack) -> AgentServiceClient:
    http2 = pyqwest.Client(pyqwest.HTTPTransport(http_version=pyqwest.HTTPVersion.HTTP2))
    return AgentServiceClient(gateway.sim_url, http_client=http2, send_compression=None)


def _cli_headers(gateway: Stack, version: str = "cli-2026.09.02-c22c1a3") -> dict[str, str]:
    return {
        "authorization": f"Bearer {gateway.token}",
        "x-cursor-client-type": "cli",
        "x-cursor-client-version": version,
    }


async def test_simulator_fails_a_run_whose_requests_go_unanswered(gateway: Stack) -> None:
    """A client that never answers the request-context exec: a real Run would hang for good; the
    simulator ends it with an error so that tests see it."""
    run = agent.AgentRunRequest(
        model_details=agent.ModelDetails(model_id="gpt-5.2"),
        requested_model=agent.RequestedModel(model_id="gpt-5.2"),
    )
    run.conversation_state.SetInParent()
    run.conversation_state.mode = 2
    run.mcp_tools.SetInParent()
    user = run.action.user_message_action.user_message
    user.text, user.message_id, user.mode = "hello", str(uuid.uuid4()), 2
    user.selected_context.SetInParent()

    async def requests() -> AsyncIterator[agent.AgentClientMessage]:
        yield agent.AgentClientMessage(run_request=run)
        await asyncio.sleep(60)  # keeps the request side open, answering nothing

    received: list[str | None] = []

    async def drain() -> None:
        async for message in _raw_client(gateway).run(requests(), headers=_cli_headers(gateway)):
            received.append(message.WhichOneof("message"))

    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        await drain()
    assert received == ["exec_server_message"]  # the request-context exec, then nothing
    assert "unanswered" in caught.value.message
    assert REPLY_TIMEOUT_S <= time.monotonic() - started < REPLY_TIMEOUT_S + 10


async def test_ide_style_version_from_the_cli_type_is_outdated(gateway: Stack) -> None:
    client = _raw_client(gateway)
    ok = await client.get_usable_models(agent.GetUsableModelsRequest(), headers=_cli_headers(gateway))
    assert "gpt-5.2" in [m.model_id for m in ok.models]
    with pytest.raises(ConnectError) as caught:
        await client.get_usable_models(
            agent.GetUsableModelsRequest(), headers=_cli_headers(gateway, "3.18.9")
        )
    assert classify(caught.value).failure is Failure.OUTDATED_CLIENT
    with pytest.raises(ConnectError) as caught:  # a CLI build older than the simulator's minimum
        await client.get_usable_models(
            agent.GetUsableModelsRequest(), headers=_cli_headers(gateway, "cli-2025.11.25-d5b3271")
        )
    assert classify(caught.value).failure is Failure.OUTDATED_CLIENT


def test_auto_moves_on_when_the_agent_dialect_is_retired(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, {"CURSORGATE_SIMULATOR_RETIRED": "agent,inference"}, dialect="auto")
    try:
        chat = openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
        reply = chat.chat.completions.create(model="gpt-5.2", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        assert stack.chat_requests()[-1]["dialect"] == "legacy"
    finally:
        stack.stop()
