"""Chat Completions as more clients read it: reasoning where each looks for it (and inlined as
<think> on request), no empty text before a tool call, the deprecated `functions`, the legacy
`/completions`, and clear errors for embeddings and file parts. Real stack, real clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from tests.procs import Stack, start_stack

WEATHER_FUNCTION: Any = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "unit"],
    },
}


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)


def chunks_of(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def post(stack: Stack, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}{path}", json=body, headers={"authorization": f"Bearer {stack.license}"}, timeout=30
    )


# --- reasoning --------------------------------------------------------------------------------


def test_reasoning_is_sent_as_reasoning_content_and_reasoning(stack: Stack) -> None:
    body: dict[str, Any] = {
        "model": "claude-4.5-sonnet-thinking",
        "messages": [{"role": "user", "content": "why marker-3"}],
    }
    message = post(stack, "/chat/completions", body).json()["choices"][0]["message"]
    assert message["reasoning_content"] == message["reasoning"] == "Considering the request: why marker-3"

    deltas = [
        c["choices"][0]["delta"] for c in chunks_of(post(stack, "/chat/completions", body | {"stream": True}))
    ]
    thinking = [d for d in deltas if "reasoning_content" in d]
    assert thinking and all(d["reasoning"] == d["reasoning_content"] for d in thinking)
    assert "".join(d["reasoning"] for d in thinking) == "Considering the request: why marker-3"


@pytest.fixture(scope="module")
def inline_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    gateway = start_stack(tmp_path_factory.mktemp("inline"), {"CURSORGATE_REASONING_INLINE_THINK": "1"})
    yield gateway
    gateway.stop()


def test_inline_think_reaches_langchain_chat_openai(inline_stack: Stack) -> None:
    """ChatOpenAI reads no reasoning field at all; with the setting it gets <think> in the content."""
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="claude-4.5-sonnet-thinking",
        base_url=inline_stack.base_url,
        api_key=SecretStr(inline_stack.license),
        max_retries=0,
    )
    expected = (
        "<think>Considering the request: inline marker</think>\n\n"
        "Simulated claude-4.5-sonnet-thinking answer. You said: inline marker"
    )
    assert llm.invoke("inline marker").content == expected
    streamed = "".join(str(chunk.content) for chunk in llm.stream("inline marker"))
    assert streamed == expected


def test_inline_think_leaves_no_reasoning_field(inline_stack: Stack) -> None:
    body = {
        "model": "claude-4.5-sonnet-thinking",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
    }
    deltas = [
        c["choices"][0]["delta"]
        for c in chunks_of(post(inline_stack, "/chat/completions", body))
        if c["choices"]
    ]
    assert not any("reasoning_content" in d or "reasoning" in d for d in deltas)
    assert deltas[1]["content"].startswith("<think>")


# --- tool calls -----------------------------------------------------------------------------------


def test_no_empty_text_before_a_streamed_tool_call(stack: Stack) -> None:
    body = {
        "model": "gpt-5.2",
        "stream": True,
        "tools": [{"type": "function", "function": WEATHER_FUNCTION}],
        "messages": [{"role": "user", "content": "Use get_current_weather for Oslo"}],
    }
    deltas = [c["choices"][0]["delta"] for c in chunks_of(post(stack, "/chat/completions", body))]
    assert deltas[0] == {"role": "assistant", "content": None}
    assert not any(d.get("content") == "" for d in deltas)
    assert any("tool_calls" in d for d in deltas)


def test_text_stream_still_opens_with_empty_content(stack: Stack) -> None:
    body = {"model": "gpt-5.2", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    assert chunks_of(post(stack, "/chat/completions", body))[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
    }


def test_deprecated_functions_map_to_tools(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather like in Oslo?"}]
    reply = client.chat.completions.create(model="gpt-5.2", messages=messages, functions=[WEATHER_FUNCTION])
    choice = reply.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    call = choice.message.function_call
    assert call is not None and call.name == "get_current_weather"
    assert json.loads(call.arguments)["unit"] in ("celsius", "fahrenheit")

    # The result goes back as a `function` message; Cursor gets call and result as text.
    messages += [
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": call.name, "arguments": call.arguments},
        },
        {"role": "function", "name": call.name, "content": "sunny"},
    ]
    answer = client.chat.completions.create(
        model="gpt-5.2", messages=messages, functions=[WEATHER_FUNCTION], function_call="none"
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == (
        "Simulated gpt-5.2 answer. You said: Result of function get_current_weather:\nsunny"
    )


def test_deprecated_functions_streamed(stack: Stack) -> None:
    body = {
        "model": "gpt-5.2",
        "stream": True,
        "functions": [WEATHER_FUNCTION],
        "function_call": {"name": "get_current_weather"},
        "messages": [{"role": "user", "content": "Tell me something"}],
    }
    chunks = chunks_of(post(stack, "/chat/completions", body))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    calls = [d["function_call"] for d in deltas if "function_call" in d]
    assert calls[0]["name"] == "get_current_weather"
    assert json.loads("".join(c["arguments"] for c in calls))["location"]
    assert not any("tool_calls" in d for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


# --- legacy completions, embeddings, files -------------------------------------------------------


def test_legacy_completions(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-5.2", prompt="legacy marker-4")
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "Simulated gpt-5.2 answer. You said: legacy marker-4"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0

    echoed = client.completions.create(model="gpt-5.2", prompt=["echo me"], echo=True)
    assert echoed.choices[0].text == "echo meSimulated gpt-5.2 answer. You said: echo me"

    stream = client.completions.create(
        model="gpt-5.2", prompt="stream marker-6", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "Simulated gpt-5.2 answer. You said: stream marker-6"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    short = client.completions.create(model="gpt-5.2", prompt="x", max_tokens=1, stop=["never"])
    assert short.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("field", "value"), [("suffix", "end"), ("logprobs", 2), ("n", 2), ("prompt", ["a", "b"]), ("best_of", 3)]
)
def test_legacy_completions_refuses_what_a_chat_cannot_do(
    client: openai.OpenAI, field: str, value: Any
) -> None:
    body: Any = {"model": "gpt-5.2", "prompt": "x", field: value}
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(**body)
    assert info.value.body["param"] == field  # type: ignore[index]


@pytest.mark.parametrize("prefix", ["/cursor/v1", "/v1"])
def test_embeddings_say_cursor_has_none(stack: Stack, prefix: str) -> None:
    embedder = openai.OpenAI(base_url=stack.root_url + prefix, api_key=stack.license, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        embedder.embeddings.create(model="text-embedding-3-small", input="hello")
    error = info.value.body
    assert isinstance(error, dict)
    assert "no embedding models" in error["message"]
    assert error["code"] == "model_not_found"


def test_file_part_with_bad_base64_is_a_clear_400(client: openai.OpenAI) -> None:
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "summarise"},
                {
                    "type": "file",
                    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,@@@"},
                },
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-5.2", messages=messages)
    error = info.value.body
    assert isinstance(error, dict)
    assert error["param"] == "messages[0].content[1].file"
    assert error["message"] == "The file's data URL is not valid base64."


# --- tool_choice "required": one retry ------------------------------------------------------------


def sim_contexts(stack: Stack, count: int) -> list[str]:
    """The system context of the last `count` chat calls (any dialect)."""
    return [r["view"]["system"] for r in stack.chat_requests()[-count:]]


RETRY_INSTRUCTION = "Your previous answer did not call a tool"


@pytest.mark.parametrize("stream", [False, True])
def test_required_tool_call_is_asked_for_once_more(stack: Stack, stream: bool) -> None:
    body = {
        "model": "gpt-5.2",
        "stream": stream,
        "tools": [{"type": "function", "function": WEATHER_FUNCTION}],
        "tool_choice": "required",
        "messages": [{"role": "user", "content": "Tell me a story\nsim: refuse_tools=once"}],
    }
    before = len(stack.chat_requests())
    response = post(stack, "/chat/completions", body)
    assert response.status_code == 200
    if stream:
        chunks = chunks_of(response)
        deltas = [c["choices"][0]["delta"] for c in chunks]
        assert any("tool_calls" in d for d in deltas)
        assert not any(d.get("content") for d in deltas), "the first attempt's text must not leak"
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["content"] is None
        assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_current_weather"]
    assert len(stack.chat_requests()) == before + 2
    first, second = sim_contexts(stack, 2)
    assert RETRY_INSTRUCTION not in first and RETRY_INSTRUCTION in second


def test_required_tool_call_refused_twice_passes_the_text_on(client: openai.OpenAI, stack: Stack) -> None:
    before = len(stack.chat_requests())
    reply = client.chat.completions.create(
        model="gpt-5.2",
        tools=[{"type": "function", "function": WEATHER_FUNCTION}],
        tool_choice="required",
        messages=[{"role": "user", "content": "Tell me a story\nsim: refuse_tools=always"}],
    )
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == "Simulated gpt-5.2 answer. You said: Tell me a story"
    assert len(stack.chat_requests()) == before + 2  # one retry, no more


def test_no_retry_when_no_tool_call_is_required(client: openai.OpenAI, stack: Stack) -> None:
    before = len(stack.chat_requests())
    reply = client.chat.completions.create(
        model="gpt-5.2",
        tools=[{"type": "function", "function": WEATHER_FUNCTION}],
        messages=[{"role": "user", "content": "Tell me a story\nsim: refuse_tools=always"}],
    )
    assert reply.choices[0].finish_reason == "stop"
    assert len(stack.chat_requests()) == before + 1
