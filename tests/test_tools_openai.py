"""Function calling, reasoning effort and vision through the whole gateway, with the openai SDK."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from tests.procs import Stack, start_stack

pytestmark = pytest.mark.every_dialect

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "unit"],
        },
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)


def last_image(stack: Stack) -> dict[str, Any]:
    image: dict[str, Any] = stack.last_view()["messages"][-1]["images"][0]
    return image


def test_non_stream_tool_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "Use get_current_weather for Boston"}],
        tools=[WEATHER],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.function.name == "get_current_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"location", "unit"} and args["unit"] in ("celsius", "fahrenheit")


def test_readme_example_calls_the_tool(client: openai.OpenAI) -> None:
    """The README's (and the seed document's) example: the prompt names the topic, not the tool."""
    reply = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "What is the weather like in Boston today?"}],
        tools=[WEATHER, TIME],
    )
    calls = reply.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_current_weather"]  # type: ignore[union-attr]
    assert reply.choices[0].finish_reason == "tool_calls"


def test_stream_tool_call_deltas_like_openai(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-5.2",
            messages=[{"role": "user", "content": "Use get_current_weather please"}],
            tools=[WEATHER],
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) >= 2, "a delta with id and name, then the arguments"
    first, rest = deltas[0], deltas[1:]
    assert first.index == 0 and first.id and first.type == "function"
    assert first.function is not None and first.function.name == "get_current_weather"
    assert all(d.id is None and (d.function is None or d.function.name is None) for d in rest)
    arguments = "".join((d.function.arguments or "") for d in deltas if d.function)
    assert json.loads(arguments)["location"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_arguments_survive_cursor_restarting_them(client: openai.OpenAI, stream: bool) -> None:
    """`args=restart`: the simulator sends a compact copy of the arguments, then the growing spaced
    JSON (the legacy wire; other dialects stream as usual). The caller gets one valid object."""
    messages: Any = [{"role": "user", "content": "Use get_current_weather\nsim: args=restart"}]
    if stream:
        chunks = client.chat.completions.create(
            model="gpt-5.2", messages=messages, tools=[WEATHER], stream=True
        )
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        arguments = "".join((d.function.arguments or "") for d in deltas if d.function)
    else:
        reply = client.chat.completions.create(model="gpt-5.2", messages=messages, tools=[WEATHER])
        arguments = (reply.choices[0].message.tool_calls or [])[0].function.arguments  # type: ignore[union-attr]
    assert json.loads(arguments) == {"location": "sim-location", "unit": "celsius"}


@pytest.mark.parametrize("stream", [False, True])
def test_round_trip_call_result_answer(client: openai.OpenAI, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "Use get_current_weather for Paris"}]
    first = client.chat.completions.create(model="claude-4.5-sonnet", messages=messages, tools=[WEATHER])
    call = (first.choices[0].message.tool_calls or [])[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"})
    if stream:
        chunks = client.chat.completions.create(
            model="claude-4.5-sonnet",
            messages=messages,
            tools=[WEATHER],
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        final = client.chat.completions.create(model="claude-4.5-sonnet", messages=messages, tools=[WEATHER])
        assert final.choices[0].finish_reason == "stop"
        text = final.choices[0].message.content or ""
    assert "22 degrees and sunny" in text


def test_tool_result_for_unknown_call_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-5.2",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_nope", "content": "x"},
            ],
            tools=[WEATHER],
        )
    assert isinstance(info.value.body, dict) and "tool_call_id" in str(info.value.body["param"])


def test_parallel_calls_have_unique_ids(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "Call get_current_weather and get_time together"}],
        tools=[WEATHER, TIME],
    )
    calls = reply.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_current_weather", "get_time"]  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 2


def test_parallel_tool_calls_false_keeps_one(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "Call get_current_weather and get_time together"}],
        tools=[WEATHER, TIME],
        parallel_tool_calls=False,
    )
    assert len(reply.choices[0].message.tool_calls or []) == 1


def test_tool_choice_forces_named_function(client: openai.OpenAI, stack: Stack) -> None:
    reply = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "What should I wear today?"}],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = reply.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_time"]  # type: ignore[union-attr]
    assert [t["name"] for t in stack.last_view()["tools"]] == ["get_time"]


def test_tool_choice_required_and_none(client: openai.OpenAI) -> None:
    required = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "Anything"}],
        tools=[WEATHER],
        tool_choice="required",
    )
    assert required.choices[0].finish_reason == "tool_calls"
    none = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "Use get_current_weather"}],
        tools=[WEATHER],
        tool_choice="none",
    )
    assert none.choices[0].finish_reason == "stop" and not none.choices[0].message.tool_calls


def test_tools_reach_cursor_with_their_schema(client: openai.OpenAI, stack: Stack, dialect: str) -> None:
    client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "Use get_time"}],
        tools=[TIME],
    )
    (tool,) = stack.last_view()["tools"]
    assert tool["name"] == "get_time" and tool["schema"]["required"] == ["tz"]
    if dialect == "legacy":  # the legacy RPC carries them on Cursor's native MCP-tool path
        sent = stack.chat_requests()[-1]["request"]["streamUnifiedChatRequest"]
        assert sent["isAgentic"] is True and sent["supportedTools"] == ["CLIENT_SIDE_TOOL_V2_MCP"]
        assert sent["mcpTools"][0]["serverName"] == "custom"
        assert json.loads(sent["mcpTools"][0]["parameters"])["required"] == ["tz"]


def test_reasoning_effort_picks_variant(client: openai.OpenAI, stack: Stack) -> None:
    client.chat.completions.create(
        model="gpt-5.2", messages=[{"role": "user", "content": "effort"}], reasoning_effort="high"
    )
    assert stack.last_view()["model"] == "gpt-5.2-high"
    reply = client.chat.completions.create(
        model="claude-4.5-sonnet", messages=[{"role": "user", "content": "effort"}], reasoning_effort="high"
    )
    sent = stack.last_view()
    assert sent["model"] == "claude-4.5-sonnet-thinking" and sent["thinking"] is True
    assert (reply.choices[0].message.model_extra or {}).get("reasoning_content")


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def image_server() -> Iterator[str]:
    body = png(7, 5)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cat.png"
    server.shutdown()


def image_message(url: str) -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this image"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def test_image_data_url_reaches_cursor_as_bytes(client: openai.OpenAI, stack: Stack) -> None:
    url = "data:image/png;base64," + base64.b64encode(png(12, 9)).decode()
    reply = client.chat.completions.create(model="claude-4.5-sonnet", messages=image_message(url))
    assert "Describe this image" in (reply.choices[0].message.content or "")
    image = last_image(stack)
    assert (image["width"], image["height"]) == (12, 9)
    assert base64.b64decode(image["data"]) == png(12, 9)


def test_image_http_url_is_fetched(tmp_path: Path, image_server: str, dialect: str) -> None:
    gateway = start_stack(tmp_path, {"CURSORGATE_IMAGE_FETCH_PRIVATE": "true"}, dialect=dialect)
    try:
        client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.license, max_retries=0)
        client.chat.completions.create(model="claude-4.5-sonnet", messages=image_message(image_server))
        image = last_image(gateway)
        assert (image["width"], image["height"]) == (7, 5)
    finally:
        gateway.stop()


def test_image_url_to_private_address_is_refused_by_default(client: openai.OpenAI, image_server: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude-4.5-sonnet", messages=image_message(image_server))
    assert isinstance(info.value.body, dict)
    assert "public hosts" in info.value.body["message"]
    assert info.value.body["param"] == "messages[0].content[1].image_url"


@pytest.mark.parametrize(
    "url",
    ["data:image/png;base64,bm90IGFuIGltYWdl", "data:image/png;base64,%%%", "ftp://example.invalid/x.png"],
)
def test_undecodable_image_is_400(client: openai.OpenAI, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude-4.5-sonnet", messages=image_message(url))
    assert isinstance(info.value.body, dict) and "image_url" in str(info.value.body["param"])
