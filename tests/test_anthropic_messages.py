"""Anthropic Messages through the whole gateway, driven by the official `anthropic` SDK and
LangChain's ChatAnthropic, plus the exact SSE event order read with httpx."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import anthropic
import httpx
import pytest
from PIL import Image

from tests.procs import Stack

WEATHER: Any = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "unit"],
    },
}


@pytest.fixture
def client(stack: Stack) -> anthropic.Anthropic:
    # The root as base URL: the SDK appends /v1/messages itself.
    return anthropic.Anthropic(base_url=stack.root_url, api_key=stack.license, max_retries=0)


@pytest.fixture
def cursor_client(stack: Stack) -> anthropic.Anthropic:
    # The documented base URL, http://host:port/cursor (-> /cursor/v1/messages).
    return anthropic.Anthropic(base_url=f"{stack.root_url}/cursor", api_key=stack.license, max_retries=0)


def last_request(stack: Stack) -> dict[str, Any]:
    """What the last chat call asked Cursor for, in the simulator's dialect-neutral view."""
    return stack.last_view()


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an SSE body, checking each frame names its data's type."""
    events = []
    for block in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"]
        events.append((fields["event"], data))
    return events


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- messages -------------------------------------------------------------------------------


def test_message_non_streamed(client: anthropic.Anthropic, stack: Stack) -> None:
    message = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=200,
        system="You are terse.",
        messages=[{"role": "user", "content": "anthropic marker-17"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "claude-4.5-sonnet"
    assert [block.type for block in message.content] == ["text"]
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert block.text == "Simulated claude-4.5-sonnet answer. You said: anthropic marker-17"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    if stack.last_view()["dialect"] == "legacy":
        # No counts on the legacy RPC: core's estimate, ceil(chars / 4), 16 characters per message.
        expected = -(-(16 + len("You are terse.") + 16 + len("anthropic marker-17")) // 4)
    else:
        # What the simulated model reports (simulator/script.py): ceil(chars / 3), 8 per message.
        expected = -(-(len("You are terse.") + len("anthropic marker-17") + 8) // 3)
    assert message.usage.input_tokens == expected
    assert message.usage.output_tokens > 0


def test_message_streamed_with_the_sdk(cursor_client: anthropic.Anthropic) -> None:
    with cursor_client.messages.stream(
        model="claude-4.5-sonnet", max_tokens=200, messages=[{"role": "user", "content": "stream marker-23"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Simulated claude-4.5-sonnet answer. You said: stream marker-23"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == -(-(16 + len("stream marker-23")) // 4)
    assert final.usage.output_tokens > 0


def test_stream_event_order_is_anthropics(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.root_url}/v1/messages",
        headers={"x-api-key": stack.license, "anthropic-version": "2023-06-01"},
        json={
            "model": "claude-4.5-sonnet",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "order\nsim: chunks=3 text=one_two_three"}],
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["stop_reason"] is None
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "one two three"
    assert events[6][1] == {"type": "content_block_stop", "index": 0}
    message_delta = events[7][1]
    assert message_delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert message_delta["usage"]["output_tokens"] > 0


def test_stream_error_after_start_is_an_error_event(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.root_url}/v1/messages",
        headers={"x-api-key": stack.license},
        json={
            "model": "claude-4.5-sonnet",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "fail\nsim: error=internal after=2"}],
        },
    )
    assert response.status_code == 200
    events = sse_events(response)
    assert events[0][0] == "message_start"
    name, data = events[-1]
    assert name == "error"
    assert data["error"]["type"] == "api_error" and data["error"]["message"]


# --- tools ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_and_tool_result_round_trip(client: anthropic.Anthropic, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather like in Paris?"}]
    if stream:
        with client.messages.stream(
            model="claude-4.5-sonnet", max_tokens=300, messages=messages, tools=[WEATHER]
        ) as events:
            first: anthropic.types.Message = events.get_final_message()
    else:
        first = client.messages.create(
            model="claude-4.5-sonnet", max_tokens=300, messages=messages, tools=[WEATHER]
        )
    assert first.stop_reason == "tool_use"
    calls = [block for block in first.content if isinstance(block, anthropic.types.ToolUseBlock)]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_current_weather" and call.id
    assert set(call.input) == {"location", "unit"} and call.input["unit"] in ("celsius", "fahrenheit")

    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 24 C"}],
        },
    ]
    second = client.messages.create(
        model="claude-4.5-sonnet", max_tokens=300, messages=messages, tools=[WEATHER]
    )
    assert second.stop_reason == "end_turn"
    text = "".join(b.text for b in second.content if isinstance(b, anthropic.types.TextBlock))
    # The simulator echoes the MCP result Cursor received.
    assert text == "The tools answered: get_current_weather -> sunny, 24 C"


def test_tool_result_blocks_and_is_error(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=300,
        messages=[{"role": "user", "content": "Use get_current_weather for Oslo"}],
        tools=[WEATHER],
    )
    call = next(b for b in first.content if isinstance(b, anthropic.types.ToolUseBlock))
    second = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=300,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Use get_current_weather for Oslo"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "is_error": True,
                        "content": [{"type": "text", "text": "station offline"}],
                    }
                ],
            },
        ],
    )
    text = "".join(b.text for b in second.content if isinstance(b, anthropic.types.TextBlock))
    # Cursor gets the error flag in the MCP result (the simulator echoes it).
    # The flag reaches Cursor apart from the text (the simulated model says it saw an error).
    assert text == "The tools answered: get_current_weather -> error: station offline"


def test_streamed_tool_call_events(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.root_url}/cursor/v1/messages?beta=true",
        headers={"x-api-key": stack.license},
        json={
            "model": "claude-4.5-sonnet",
            "max_tokens": 100,
            "stream": True,
            "tools": [WEATHER],
            "messages": [{"role": "user", "content": "Use get_current_weather for Rome"}],
        },
    )
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    block = events[1][1]["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "get_current_weather" and block["input"] == {}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert deltas and all(d["type"] == "input_json_delta" for d in deltas)
    assert json.loads("".join(d["partial_json"] for d in deltas))["unit"] in ("celsius", "fahrenheit")
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_choice_none_sends_no_call(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "What is the weather like in Paris?"}],
    )
    assert message.stop_reason == "end_turn"
    assert [b.type for b in message.content] == ["text"]


def test_tool_choice_tool_forces_the_named_tool(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_current_weather", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Tell me something"}],
    )
    assert message.stop_reason == "tool_use"
    assert [b.name for b in message.content if isinstance(b, anthropic.types.ToolUseBlock)] == [
        "get_current_weather"
    ]


def test_tool_choice_any_is_asked_for_once_more(client: anthropic.Anthropic, stack: Stack) -> None:
    before = len(stack.chat_requests())
    message = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Tell me a story\nsim: refuse_tools=once"}],
    )
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["tool_use"]
    assert len(stack.chat_requests()) == before + 2


# --- thinking, images, stop sequences -----------------------------------------------------------


def test_thinking_model_streams_thinking_blocks(stack: Stack, client: anthropic.Anthropic) -> None:
    response = httpx.post(
        f"{stack.root_url}/v1/messages",
        headers={"x-api-key": stack.license},
        json={
            "model": "claude-4.5-sonnet-thinking",
            "max_tokens": 200,
            "stream": True,
            "messages": [{"role": "user", "content": "think marker-5"}],
        },
    )
    events = sse_events(response)
    assert [n for n, _ in events[:3]] == ["message_start", "content_block_start", "ping"]
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    thinking_deltas = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 0]
    assert [d["type"] for d in thinking_deltas][-1] == "signature_delta"
    assert {d["type"] for d in thinking_deltas[:-1]} == {"thinking_delta"}
    assert "".join(d["thinking"] for d in thinking_deltas[:-1]) == "Considering the request: think marker-5"
    assert thinking_deltas[-1]["signature"]
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "text"]
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert stops == [0, 1]

    # The SDK accumulates the same into blocks, and takes the block back in the next turn.
    with client.messages.stream(
        model="claude-4.5-sonnet-thinking",
        max_tokens=200,
        messages=[{"role": "user", "content": "think again"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    thinking = final.content[0]
    assert isinstance(thinking, anthropic.types.ThinkingBlock) and thinking.signature
    followup = client.messages.create(
        model="claude-4.5-sonnet-thinking",
        max_tokens=200,
        messages=[
            {"role": "user", "content": "think again"},
            {"role": "assistant", "content": final.content},
            {"role": "user", "content": "and once more"},
        ],
    )
    assert followup.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("thinking", "extra"),
    [
        ({"type": "enabled", "budget_tokens": 2048}, {}),
        ({"type": "adaptive"}, {"output_config": {"effort": "high"}}),
    ],
)
def test_thinking_parameter_selects_the_thinking_variant(
    client: anthropic.Anthropic, stack: Stack, thinking: Any, extra: dict[str, Any]
) -> None:
    message = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=2000,
        thinking=thinking,
        messages=[{"role": "user", "content": "variant marker"}],
        extra_body=extra,
    )
    assert last_request(stack)["model"] == "claude-4.5-sonnet-thinking"
    assert message.model == "claude-4.5-sonnet"  # echoes what the caller asked for
    assert [b.type for b in message.content] == ["thinking", "text"]


def test_base64_image_reaches_cursor_as_bytes(client: anthropic.Anthropic, stack: Stack) -> None:
    data = png(10, 6)
    message = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this image"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": base64.b64encode(data).decode(),
                        },
                    },
                ],
            }
        ],
    )
    assert "Describe this image" in "".join(
        b.text for b in message.content if isinstance(b, anthropic.types.TextBlock)
    )
    image = last_request(stack)["messages"][-1]["images"][0]
    assert (image["width"], image["height"]) == (10, 6)
    assert base64.b64decode(image["data"]) == data


def test_broken_base64_image_is_an_invalid_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="claude-4.5-sonnet",
            max_tokens=100,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "%%%"},
                        }
                    ],
                }
            ],
        )
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequences(client: anthropic.Anthropic, stream: bool) -> None:
    kwargs: Any = {
        "model": "claude-4.5-sonnet",
        "max_tokens": 100,
        "stop_sequences": ["HALT"],
        "messages": [{"role": "user", "content": "sim: text=alpha_beta_HALT_gamma chunks=4"}],
    }
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "HALT"
    assert (
        "".join(b.text for b in message.content if isinstance(b, anthropic.types.TextBlock)) == "alpha beta "
    )


def test_max_tokens_stop_reason(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=2,
        messages=[{"role": "user", "content": "sim: text=a_long_reply_that_goes_past_eight_characters"}],
    )
    assert message.stop_reason == "max_tokens"
    assert "".join(b.text for b in message.content if isinstance(b, anthropic.types.TextBlock)) == "a long r"


# --- count_tokens -----------------------------------------------------------------------------


def test_count_tokens(client: anthropic.Anthropic, cursor_client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(
        model="claude-4.5-sonnet", messages=[{"role": "user", "content": "x" * 400}]
    )
    assert counted.input_tokens == (16 + 400) // 4
    with_system = cursor_client.messages.count_tokens(
        model="claude-4.5-sonnet",
        system=[{"type": "text", "text": "y" * 100}],
        messages=[{"role": "user", "content": "x" * 400}],
    )
    assert with_system.input_tokens == (16 + 100 + 16 + 400) // 4


def test_count_tokens_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


# --- auth ----------------------------------------------------------------------------------


def test_auth_by_bearer(stack: Stack) -> None:
    bearer = anthropic.Anthropic(base_url=stack.root_url, auth_token=stack.license, max_retries=0)
    message = bearer.messages.create(
        model="claude-4.5-sonnet", max_tokens=50, messages=[{"role": "user", "content": "bearer"}]
    )
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize("path", ["/v1/messages", "/cursor/v1/messages", "/v1/messages/count_tokens"])
def test_wrong_key_is_authentication_error(stack: Stack, path: str) -> None:
    body = {"model": "claude-4.5-sonnet", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    for headers in ({"x-api-key": "sk-wrong"}, {"authorization": "Bearer sk-wrong"}, {}):
        response = httpx.post(stack.root_url + path, headers=headers, json=body)
        assert response.status_code == 401
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "authentication_error"
        assert "sk-wrong" not in response.text


def test_wrong_key_raises_the_sdks_error(stack: Stack) -> None:
    wrong = anthropic.Anthropic(base_url=stack.root_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(
            model="claude-4.5-sonnet", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )


# --- what Claude Code sends, and malformed input ---------------------------------------------------


def test_claude_code_shaped_request_is_accepted(stack: Stack) -> None:
    """Unknown fields and betas pass; mid-conversation system messages and system blocks map."""
    response = httpx.post(
        f"{stack.root_url}/cursor/v1/messages?beta=true",
        headers={
            "x-api-key": stack.license,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,effort-2025-11-24",
            "x-app": "cli",
            "anthropic-dangerous-direct-browser-access": "true",
        },
        json={
            "model": "claude-4.5-sonnet",
            "max_tokens": 32000,
            "stream": True,
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "medium"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "metadata": {"user_id": "user_abc"},
            "system": [
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be brief."},
            ],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "first", "cache_control": {"type": "ephemeral"}}],
                },
                {"role": "assistant", "content": "ok"},
                {"role": "system", "content": "The user switched directories."},
                {"role": "user", "content": "cc marker-88"},
            ],
            "tools": [{**WEATHER, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "auto"},
            "some_future_field": {"x": 1},
        },
    )
    assert response.status_code == 200, response.text
    events = sse_events(response)
    assert events[-1][0] == "message_stop"
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert "cc marker-88" in text
    sent = last_request(stack)
    assert sent["model"] == "claude-4.5-sonnet-thinking"


MALFORMED: list[tuple[str, Any, int, str]] = [
    ("not json", b"{nope", 400, "invalid_request_error"),
    ("array body", [], 400, "invalid_request_error"),
    (
        "missing max_tokens",
        {"model": "m", "messages": [{"role": "user", "content": "x"}]},
        400,
        "invalid_request_error",
    ),
    ("max_tokens as string", {"model": "m", "max_tokens": "5", "messages": []}, 400, "invalid_request_error"),
    (
        "empty messages",
        {"model": "claude-4.5-sonnet", "max_tokens": 5, "messages": []},
        400,
        "invalid_request_error",
    ),
    (
        "unknown block type",
        {
            "model": "claude-4.5-sonnet",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "video"}]}],
        },
        400,
        "invalid_request_error",
    ),
    (
        "document block by file id",
        {
            "model": "claude-4.5-sonnet",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "file", "file_id": "f"}}],
                }
            ],
        },
        400,
        "invalid_request_error",
    ),
    (
        "tool_choice tool without name",
        {
            "model": "claude-4.5-sonnet",
            "max_tokens": 5,
            "tools": [WEATHER],
            "tool_choice": {"type": "tool"},
            "messages": [{"role": "user", "content": "x"}],
        },
        400,
        "invalid_request_error",
    ),
    (
        "tool_result for no tool_use",
        {
            "model": "claude-4.5-sonnet",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}],
                }
            ],
        },
        400,
        "invalid_request_error",
    ),
    (
        "temperature above 1",
        {
            "model": "claude-4.5-sonnet",
            "max_tokens": 5,
            "temperature": 1.5,
            "messages": [{"role": "user", "content": "x"}],
        },
        400,
        "invalid_request_error",
    ),
    (
        "unpaired surrogate",
        '{"model": "claude-4.5-sonnet", "max_tokens": 5, '
        '"messages": [{"role": "user", "content": "\\ud800"}]}',
        400,
        "invalid_request_error",
    ),
    (
        "unknown model",
        {"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        404,
        "not_found_error",
    ),
]


@pytest.mark.parametrize("path", ["/v1/messages", "/cursor/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize(("case", "body", "status", "kind"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_gets_anthropics_error(
    stack: Stack, path: str, case: str, body: Any, status: int, kind: str
) -> None:
    if path.endswith("count_tokens") and case in {"missing max_tokens", "temperature above 1"}:
        pytest.skip("count_tokens takes neither field")
    headers = {"x-api-key": stack.license, "content-type": "application/json"}
    content = (
        body
        if isinstance(body, bytes)
        else body.encode()
        if isinstance(body, str)
        else json.dumps(body).encode()
    )
    response = httpx.post(stack.root_url + path, headers=headers, content=content)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == kind
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]


def test_wrong_method_and_unknown_subpath(stack: Stack) -> None:
    response = httpx.get(f"{stack.root_url}/v1/messages", headers={"x-api-key": stack.license})
    assert response.status_code == 405
    assert response.json()["type"] == "error"
    # The OpenAI surface keeps OpenAI's shape.
    response = httpx.post(
        f"{stack.root_url}/v1/chat/completions", headers={"authorization": "Bearer x"}, json={}
    )
    assert response.status_code == 400 and "error" in response.json() and "type" not in response.json()


# --- LangChain ---------------------------------------------------------------------------------


def test_langchain_chat_anthropic(stack: Stack) -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_core.messages import HumanMessage, ToolMessage
    from pydantic import SecretStr

    llm = ChatAnthropic(  # type: ignore[call-arg]
        model="claude-4.5-sonnet",
        base_url=stack.root_url,
        api_key=SecretStr(stack.license),
        max_retries=0,
        max_tokens=200,
    )
    reply = llm.invoke("langchain marker-9")
    assert reply.content == "Simulated claude-4.5-sonnet answer. You said: langchain marker-9"

    streamed = "".join(
        str(chunk.content) for chunk in llm.stream("stream marker-10") if isinstance(chunk.content, str)
    )
    assert "stream marker-10" in streamed

    with_tools = llm.bind_tools([WEATHER])
    question = HumanMessage("What is the weather like in Lima?")
    call_message = with_tools.invoke([question])
    assert [c["name"] for c in call_message.tool_calls] == ["get_current_weather"]
    call = call_message.tool_calls[0]
    answer = with_tools.invoke([question, call_message, ToolMessage("cloudy", tool_call_id=call["id"])])
    assert answer.text == "The tools answered: get_current_weather -> cloudy"


def test_langchain_chat_anthropic_with_thinking(stack: Stack) -> None:
    from langchain_anthropic import ChatAnthropic
    from pydantic import SecretStr

    llm = ChatAnthropic(  # type: ignore[call-arg]
        model="claude-4.5-sonnet",
        base_url=stack.root_url,
        api_key=SecretStr(stack.license),
        max_retries=0,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    reply = llm.invoke("thinking marker-12")
    assert isinstance(reply.content, list)
    blocks = {block["type"]: block for block in reply.content if isinstance(block, dict)}
    assert blocks["thinking"]["thinking"] == "Considering the request: thinking marker-12"
    assert blocks["thinking"]["signature"]
    assert (
        blocks["text"]["text"] == "Simulated claude-4.5-sonnet-thinking answer. You said: thinking marker-12"
    )


@pytest.mark.parametrize(
    ("asked", "served"),
    [("claude-opus-4-8", "claude-4.5-opus-high"), ("claude-sonnet-4-5", "claude-4.5-sonnet")],
)
def test_anthropic_model_ids_reach_cursors_models(
    client: anthropic.Anthropic, stack: Stack, asked: str, served: str
) -> None:
    """Claude Code and the anthropic SDKs send Anthropic's own ids: built-in aliases serve them."""
    message = client.messages.create(
        model=asked, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.model == asked
    assert stack.last_view()["model"] == served
