"""The Anthropic Messages facade served for real against the scripted fake core: every core
error in Anthropic's shape and status, the request as core receives it, and the stream
translator on its own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
import pytest_asyncio

from cursorgate.v1 import chat_pb2, errors_pb2
from facade.anthropic_messages.convert import MessageStream
from facade.config import FacadeSettings
from tests.fakecore import (  # noqa: F401  (the fixtures register by being imported)
    LICENSE,
    FakeCore,
    RunningFacade,
    facade_fixture,
    fake_core_fixture,
    free_socket,
    serve_facade,
)

KEY = {"x-api-key": LICENSE}
HELLO: Any = [{"role": "user", "content": "hello there"}]


@pytest_asyncio.fixture
async def http(facade: RunningFacade) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=facade.url, timeout=10) as raw:
        yield raw


@pytest_asyncio.fixture
async def client(facade: RunningFacade) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(base_url=facade.url, api_key=LICENSE, max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# ErrorCode name -> Anthropic's status and error type (https://docs.anthropic.com/en/api/errors).
ERROR_CASES: list[tuple[str, int, str, type[anthropic.APIStatusError]]] = [
    ("invalid_request", 400, "invalid_request_error", anthropic.BadRequestError),
    ("unauthenticated", 401, "authentication_error", anthropic.AuthenticationError),
    ("model_not_allowed", 403, "permission_error", anthropic.PermissionDeniedError),
    ("model_not_found", 404, "not_found_error", anthropic.NotFoundError),
    ("rate_limited", 429, "rate_limit_error", anthropic.RateLimitError),
    ("quota_exceeded", 429, "rate_limit_error", anthropic.RateLimitError),
    ("upstream_unavailable", 529, "overloaded_error", anthropic.InternalServerError),
    ("no_account_available", 529, "overloaded_error", anthropic.InternalServerError),
    ("upstream_outdated_client", 500, "api_error", anthropic.InternalServerError),
    ("upstream_auth", 500, "api_error", anthropic.InternalServerError),
    ("upstream_error", 500, "api_error", anthropic.InternalServerError),
    ("upstream_timeout", 504, "timeout_error", anthropic.InternalServerError),
    ("internal", 500, "api_error", anthropic.InternalServerError),
    ("max_mode_required", 400, "invalid_request_error", anthropic.BadRequestError),
    ("request_too_large", 413, "request_too_large", anthropic.APIStatusError),
    ("store_unavailable", 529, "overloaded_error", anthropic.InternalServerError),
    ("output_invalid", 500, "api_error", anthropic.InternalServerError),
    ("response_not_found", 404, "not_found_error", anthropic.NotFoundError),
    ("overloaded", 529, "overloaded_error", anthropic.InternalServerError),
]


def test_error_cases_walk_every_error_code() -> None:
    names = {
        name.removeprefix("ERROR_CODE_").lower()
        for name in errors_pb2.ErrorCode.keys()  # noqa: SIM118 (an enum wrapper, not a dict)
        if name != "ERROR_CODE_UNSPECIFIED"
    }
    assert names == {case[0] for case in ERROR_CASES}


@pytest.mark.parametrize(("name", "status", "type_", "exc"), ERROR_CASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_core_error_in_anthropic_shape(
    http: httpx.AsyncClient,
    client: anthropic.AsyncAnthropic,
    name: str,
    status: int,
    type_: str,
    exc: type[anthropic.APIStatusError],
    stream: bool,
) -> None:
    body = {"model": f"fail-{name}", "max_tokens": 10, "messages": HELLO, "stream": stream}
    response = await http.post("/v1/messages", json=body, headers=KEY)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"type": "error", "error": {"type": type_, "message": f"scripted fail-{name}"}}
    if name == "rate_limited":
        assert response.headers["retry-after"] == "2"  # 1500 ms, rounded up
    with pytest.raises(exc) as caught:
        await client.messages.create(model=f"fail-{name}", max_tokens=10, messages=HELLO, stream=stream)
    assert caught.value.status_code == status


async def test_count_tokens_error_in_anthropic_shape(http: httpx.AsyncClient) -> None:
    body = {"model": "fail-model_not_allowed", "messages": HELLO}
    response = await http.post("/cursor/v1/messages/count_tokens", json=body, headers=KEY)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


async def test_too_large_body_is_anthropics_413(http: httpx.AsyncClient, facade: RunningFacade) -> None:
    big = {
        "model": "echo",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x" * facade.settings.max_body_bytes}],
    }
    response = await http.post("/v1/messages", json=big, headers=KEY)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}]}'

    response = await http.post(
        "/cursor/v1/messages", content=chunked(), headers=KEY | {"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {
        "type": "error",
        "error": {"type": "request_too_large", "message": "Request body too large."},
    }


async def test_core_unreachable_is_overloaded() -> None:
    dead = free_socket()  # bound but never listening: connections are refused
    settings = FacadeSettings(core_address=f"127.0.0.1:{dead.getsockname()[1]}", request_timeout=5)
    try:
        async for running in serve_facade(settings):
            async with httpx.AsyncClient(base_url=running.url, timeout=10) as raw:
                response = await raw.post(
                    "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": HELLO}, headers=KEY
                )
            assert response.status_code == 529
            assert response.json()["error"]["type"] == "overloaded_error"
    finally:
        dead.close()


async def test_mid_stream_error_is_an_error_event(http: httpx.AsyncClient) -> None:
    body = {"model": "midfail", "max_tokens": 10, "messages": HELLO, "stream": True}
    response = await http.post("/v1/messages", json=body, headers=KEY)
    assert response.status_code == 200
    events = sse_events(response.text)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream broke mid-answer"},
    }


async def test_request_reaches_core_converted(http: httpx.AsyncClient, fake_core: FakeCore) -> None:
    body = {
        "model": "inspect",
        "max_tokens": 77,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "system": [{"type": "text", "text": "sys one"}, {"type": "text", "text": "sys two"}],
        "tools": [
            {"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [
            {"role": "user", "content": "question"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "pondering", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "let me look"},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found", "is_error": True},
                    {"type": "text", "text": "go on"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
            {"role": "system", "content": "mid-conversation note"},
        ],
    }
    response = await http.post("/v1/messages", json=body, headers={"authorization": f"Bearer {LICENSE}"})
    assert response.status_code == 200, response.text
    seen = json.loads(response.json()["content"][0]["text"])
    request = seen["request"]
    assert request["model"] == "inspect" and request["user"] == "u-1"
    assert request["requestId"].startswith("msg_")
    assert request["sampling"] == {"temperature": 0.5, "topP": 0.9, "maxTokens": 77, "stop": ["END"]}
    assert request["tools"] == [
        {"name": "lookup", "description": "Look up", "parameters": {"type": "object"}}
    ]
    assert request["toolChoice"] == {"mode": "MODE_REQUIRED"}
    assert request["parallelToolCalls"] is False
    assert request["reasoningEffort"] == "REASONING_EFFORT_MEDIUM"  # 4,096 <= 10,000 < 16,384
    assert request["messages"] == [
        {"role": "ROLE_SYSTEM", "content": [{"text": "sys one"}, {"text": "sys two"}]},
        {"role": "ROLE_USER", "content": [{"text": "question"}]},
        {
            "role": "ROLE_ASSISTANT",
            "content": [{"text": "let me look"}],
            "toolCalls": [{"id": "toolu_1", "name": "lookup", "arguments": '{"q":"x"}'}],
            "reasoning": "pondering",
        },
        {"role": "ROLE_TOOL", "content": [{"text": "found"}], "toolCallId": "toolu_1", "toolError": True},
        {
            "role": "ROLE_USER",
            "content": [
                {"text": "go on"},
                {"image": {"url": "https://example.com/a.png"}},
                {"image": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {"role": "ROLE_SYSTEM", "content": [{"text": "mid-conversation note"}]},
    ]
    assert seen["metadata"]["authorization"] == f"Bearer {LICENSE}"


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({}, None),
        ({"thinking": {"type": "disabled"}}, None),
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}, None),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "REASONING_EFFORT_LOW"),
        ({"thinking": {"type": "enabled", "budget_tokens": 32000}}, "REASONING_EFFORT_HIGH"),
        ({"thinking": {"type": "adaptive"}}, "REASONING_EFFORT_MEDIUM"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, "REASONING_EFFORT_XHIGH"),
        ({"output_config": {"effort": "low"}}, "REASONING_EFFORT_LOW"),
    ],
)
async def test_thinking_and_effort_map_to_reasoning_effort(
    http: httpx.AsyncClient, fields: dict[str, Any], effort: str | None
) -> None:
    body = {"model": "inspect", "max_tokens": 5, "messages": HELLO, **fields}
    response = await http.post("/v1/messages", json=body, headers=KEY)
    request = json.loads(response.json()["content"][0]["text"])["request"]
    assert request.get("reasoningEffort") == effort


async def test_x_api_key_is_forwarded_as_bearer(http: httpx.AsyncClient, fake_core: FakeCore) -> None:
    response = await http.post(
        "/v1/messages", json={"model": "echo", "max_tokens": 5, "messages": HELLO}, headers=KEY
    )
    assert response.status_code == 200
    assert fake_core.metadata[-1]["authorization"] == f"Bearer {LICENSE}"


# --- the stream translator, in process ---------------------------------------------------------


def ev(**kind: Any) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(**kind)


def run(stream: MessageStream, events: list[chat_pb2.ChatEvent]) -> list[tuple[str, dict[str, Any]]]:
    raw = stream.start(events[0])
    for event in events:
        raw += stream.text(event.text.text) if event.WhichOneof("event") == "text" else stream.event(event)
    raw += stream.end()
    return sse_events(raw.decode())


def test_stream_blocks_per_output_kind() -> None:
    events = run(
        MessageStream(message_id="msg_1", model="m"),
        [
            ev(reasoning=chat_pb2.ReasoningDelta(text="hmm")),
            ev(text=chat_pb2.TextDelta(text="calling")),
            ev(tool_call=chat_pb2.ToolCallDelta(index=0, id="t0", name="a", arguments='{"x"')),
            ev(tool_call=chat_pb2.ToolCallDelta(index=0, arguments=":1}")),
            ev(tool_call=chat_pb2.ToolCallDelta(index=1, id="t1", name="b")),
            ev(usage=chat_pb2.Usage(prompt_tokens=7, completion_tokens=5)),
            ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_TOOL_CALLS)),
        ],
    )
    assert [(name, data.get("index")) for name, data in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("ping", None),
        ("content_block_delta", 0),  # thinking_delta
        ("content_block_delta", 0),  # signature_delta
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("content_block_start", 3),
        ("content_block_stop", 3),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[4][1]["delta"]["type"] == "signature_delta"
    assert events[9][1]["content_block"] == {"type": "tool_use", "id": "t0", "name": "a", "input": {}}
    assert [events[10][1]["delta"], events[11][1]["delta"]] == [
        {"type": "input_json_delta", "partial_json": '{"x"'},
        {"type": "input_json_delta", "partial_json": ":1}"},
    ]
    assert events[13][1]["content_block"]["id"] == "t1"
    assert events[15][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 7,
            "output_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_stream_stop_sequence_and_empty_answer() -> None:
    events = run(
        MessageStream(message_id="msg_2", model="m"),
        [ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP, stop_sequence="END"))],
    )
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
