"""The Responses API (`/v1/responses`) on the real stack, driven by the openai SDK, openai-agents,
LangChain, raw HTTP (Codex CLI's request) and, when npm is available, the openai Node SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, SecretStr

from tests.node import npm_project, run_node
from tests.procs import Stack, start_stack

WEATHER: Any = {
    "type": "function",
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}
# What the simulator answers for WEATHER: every required property, typed (first enum value).
WEATHER_ARGS = {"location": "sim-location", "unit": "celsius"}


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)


def auth(stack: Stack) -> dict[str, str]:
    return {"authorization": f"Bearer {stack.license}"}


def upstream_requests(stack: Stack) -> list[dict[str, Any]]:
    """What each chat call asked Cursor for, in the simulator's dialect-neutral view."""
    return [r["view"] for r in stack.chat_requests()]


def last_upstream(stack: Stack) -> dict[str, Any]:
    return upstream_requests(stack)[-1]


def conversation_texts(request: dict[str, Any]) -> list[str]:
    return [m["text"] for m in request["messages"] if m["role"] in ("user", "assistant")]


# --- plain text -----------------------------------------------------------------------------------


def test_create_returns_a_response_object(client: openai.OpenAI, stack: Stack) -> None:
    response = client.responses.create(
        model="gpt-5.2",
        input="Hello there",
        instructions="Answer like a pirate.",
        metadata={"ticket": "42"},
        max_output_tokens=500,
    )
    assert response.id.startswith("resp_")
    assert response.object == "response" and response.status == "completed"
    assert response.model == "gpt-5.2"
    assert response.metadata == {"ticket": "42"}
    assert response.instructions == "Answer like a pirate."
    assert response.output_text == "Simulated gpt-5.2 answer. You said: Hello there"
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert response.usage is not None
    assert response.usage.output_tokens > 0 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    upstream = last_upstream(stack)
    assert "Answer like a pirate." in upstream["system"]
    assert conversation_texts(upstream) == ["Hello there"]


def test_stream_follows_the_typed_event_sequence(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model="claude-4.5-sonnet-thinking",
        input="sim: thinking=2 chunks=3 text=one_two_three",
        reasoning={"effort": "high", "summary": "auto"},
        stream=True,
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "one two three"
    done = events[-1]
    assert done.type == "response.completed"
    reasoning, message = done.response.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].type == "summary_text"
    assert reasoning.summary[0].text.startswith("Considering the request")
    assert message.type == "message" and done.response.output_text == "one two three"
    assert events[0].type == "response.created" and events[0].response.status == "in_progress"


def test_stream_helper_and_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-5.2", input="sim: text=streamed_fine") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "streamed fine" == final.output_text


def test_max_output_tokens_makes_an_incomplete_response(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-5.2", input="sim: text=" + "word_" * 50, max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text) == 8  # 2 tokens of 4 characters, the gateway's estimate


# --- tools --------------------------------------------------------------------------------------


def test_function_call_and_output_round_trip(client: openai.OpenAI, stack: Stack) -> None:
    question: Any = {"role": "user", "content": "What is the weather? Use get_current_weather."}
    first = client.responses.create(model="gpt-5.2", input=[question], tools=[WEATHER], store=False)
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_current_weather"
    assert (call.id or "").startswith("fc_") and call.call_id and call.status == "completed"
    assert json.loads(call.arguments) == WEATHER_ARGS
    assert upstream_requests(stack)[-1]["tools"][0]["name"] == "get_current_weather"

    second = client.responses.create(
        model="gpt-5.2",
        input=[
            question,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "21 degrees and sunny"},
        ],
        tools=[WEATHER],
        store=False,
    )
    assert second.output_text.startswith("The tools answered: get_current_weather")
    assert "21 degrees and sunny" in second.output_text


def test_stream_function_call_events(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="gpt-5.2", input="Use get_current_weather now", tools=[WEATHER], stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    # One piece or several, as the upstream dialect passes them on; always a whole object in the end.
    assert deltas and json.loads("".join(deltas)) == WEATHER_ARGS
    (args_done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert args_done.arguments == "".join(deltas)
    done = events[-1]
    assert done.type == "response.completed"
    [call] = done.response.output
    assert call.type == "function_call" and json.loads(call.arguments) == WEATHER_ARGS


def test_built_in_tools_are_dropped(client: openai.OpenAI, stack: Stack) -> None:
    tools: Any = [
        {"type": "local_shell"},
        {"type": "custom", "name": "apply_patch", "description": "Apply a patch"},
        {"type": "web_search"},
        WEATHER,
    ]
    response = client.responses.create(model="gpt-5.2", input="Hi", tools=tools, tool_choice="auto")
    assert response.status == "completed"
    assert [t.type for t in response.tools] == ["function"]
    assert [t["name"] for t in last_upstream(stack)["tools"]] == ["get_current_weather"]


def test_reasoning_items_are_accepted_and_sent_back_as_thinking(client: openai.OpenAI, stack: Stack) -> None:
    items: Any = [
        {"role": "user", "content": "first question"},
        {
            "type": "reasoning",
            "id": "rs_earlier",
            "summary": [{"type": "summary_text", "text": "I thought about it."}],
            "encrypted_content": "opaque-blob-from-another-gateway",
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "second question"}]},
    ]
    response = client.responses.create(
        model="gpt-5.2",
        input=items,
        include=["reasoning.encrypted_content"],
    )
    assert response.output_text.endswith("You said: second question")
    assistant = last_upstream(stack)["messages"][1]
    assert assistant["text"] == "first answer"
    assert assistant["reasoning"] == "I thought about it."


def test_codex_cli_request_shape(stack: Stack) -> None:
    """The body Codex CLI 0.169 sends (docs: /work/shared/research/clients.md), as raw HTTP."""
    body = {
        "model": "gpt-5.2",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "env"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        ],
        "tools": [
            {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}},
            {"type": "local_shell"},
            {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "session-1234",
    }
    headers = auth(stack) | {"accept": "text/event-stream", "originator": "codex_exec", "session-id": "s1"}
    with httpx.stream("POST", f"{stack.base_url}/responses", json=body, headers=headers, timeout=60) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        text = "".join(reply.iter_text())
    frames = [f for f in text.split("\n\n") if f.strip()]
    first_lines = [f.splitlines()[0] for f in frames]
    assert first_lines[0] == "event: response.created"
    assert first_lines[-1] == "event: response.completed"
    completed = json.loads(frames[-1].splitlines()[1].removeprefix("data: "))
    assert completed["response"]["prompt_cache_key"] == "session-1234"
    assert completed["response"]["store"] is False
    assert completed["response"]["output"][-1]["content"][0]["text"].endswith("You said: list files")


# --- stored responses ---------------------------------------------------------------------------


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI, stack: Stack) -> None:
    first = client.responses.create(model="gpt-5.2", input="My name is Ada.", instructions="Be terse.")
    second = client.responses.create(model="gpt-5.2", input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    upstream = last_upstream(stack)
    assert conversation_texts(upstream) == [
        "My name is Ada.",
        "Simulated gpt-5.2 answer. You said: My name is Ada.",
        "What is my name?",
    ]
    # Instructions are not carried over from the previous response (OpenAI's rule).
    assert "Be terse." not in upstream["system"]
    # A stream continues the chain as well.
    third = list(
        client.responses.create(
            model="gpt-5.2", input="And now?", previous_response_id=second.id, stream=True
        )
    )[-1]
    assert third.type == "response.completed"
    assert len(conversation_texts(last_upstream(stack))) == 5
    items = client.responses.input_items.list(third.response.id)
    assert items.data and items.data[0].type == "message"


def test_retrieve_and_delete(client: openai.OpenAI) -> None:
    created = client.responses.create(model="gpt-5.2", input="keep me", metadata={"k": "v"})
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    assert fetched.metadata == {"k": "v"} and fetched.status == "completed"
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(created.id)
    assert caught.value.body == {
        "message": f"Response with id '{created.id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": "response_not_found",
    }
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    created = client.responses.create(model="gpt-5.2", input="forget me", store=False)
    assert created.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-5.2", input="again", previous_response_id=created.id)
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two licenses, a store of 3 rows whose entries live 8 seconds."""
    env = {
        "CURSORGATE_LICENSES": "sk-test-license,sk-other-license",
        "CURSORGATE_RESPONSE_STORE_MAX_ROWS": "3",
        "CURSORGATE_RESPONSE_STORE_TTL": "8",
    }
    gateway = start_stack(tmp_path_factory.mktemp("bounded"), env)
    yield gateway
    gateway.stop()


def test_store_is_per_license_bounded_and_expiring(bounded: Stack) -> None:
    mine = openai.OpenAI(base_url=bounded.base_url, api_key=bounded.license, max_retries=0)
    other = openai.OpenAI(base_url=bounded.base_url, api_key="sk-other-license", max_retries=0)
    ids = [mine.responses.create(model="gpt-5.2", input=f"n{i}").id for i in range(4)]
    started = time.monotonic()
    # Another license sees nothing, cannot continue from it, cannot delete it.
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(ids[3])
    with pytest.raises(openai.BadRequestError):
        other.responses.create(model="gpt-5.2", input="x", previous_response_id=ids[3])
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(ids[3])
    # Only the newest 3 are kept.
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(ids[0])
    assert [mine.responses.retrieve(i).id for i in ids[1:]] == ids[1:]
    # And none outlives its TTL.
    time.sleep(max(0.0, 8.5 - (time.monotonic() - started)))
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(ids[3])


IMAGE_BY_FILE_ID = {"type": "input_image", "file_id": "file-1"}
SCHEMA_WITHOUT_SCHEMA = {"type": "json_schema", "name": "a"}
FILE_BY_ID = {"type": "input_file", "file_id": "file-1"}

# --- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": "x"}, 400, "model"),
        ({"model": "gpt-5.2"}, 400, "input"),
        ({"model": "gpt-5.2", "input": 5}, 400, "input"),
        ({"model": "gpt-5.2", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, 400, None),
        ({"model": "gpt-5.2", "input": [{"role": "robot", "content": "x"}]}, 400, None),
        ({"model": "gpt-5.2", "input": [{"type": "function_call_output", "output": "x"}]}, 400, None),
        (
            {"model": "gpt-5.2", "input": [{"role": "user", "content": [IMAGE_BY_FILE_ID]}]},
            400,
            "input[0].content[0].image_url",
        ),
        ({"model": "gpt-5.2", "input": "x", "text": {"format": SCHEMA_WITHOUT_SCHEMA}}, 400, None),
        (
            {"model": "gpt-5.2", "input": [{"role": "user", "content": [FILE_BY_ID]}]},
            400,
            "input[0].content[0].file_id",
        ),
        ({"model": "gpt-5.2", "input": "x", "temperature": 3}, 400, "temperature"),
        ({"model": "gpt-5.2", "input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"model": "gpt-5.2", "input": "x", "background": True}, 400, "background"),
        ({"model": "gpt-5.2", "input": "x", "metadata": {str(i): "v" for i in range(17)}}, 400, "metadata"),
        ({"model": "gpt-5.2", "input": "x", "previous_response_id": "resp_no"}, 400, "previous_response_id"),
        ({"model": "gpt-5.2", "input": "x", "previous_response_id": "a b"}, 400, "previous_response_id"),
        (
            {"model": "gpt-5.2", "input": "x", "tools": [{"type": "function", "name": "bad name!"}]},
            400,
            "tools[0].function.name",
        ),
        ({"model": "gpt-5.2", "input": "x", "tool_choice": {"type": "function", "name": "nope"}}, 400, None),
        ({"model": "no-such-model", "input": "x"}, 404, "model"),
        ({"model": "gpt-5.2", "input": "\ud800"}, 400, "input"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_requests_get_openai_errors(
    stack: Stack, body: dict[str, Any], status: int, param: str | None, stream: bool
) -> None:
    raw = json.dumps(body | {"stream": stream})  # ensure_ascii spells the lone surrogate as "\ud800"
    reply = httpx.post(
        f"{stack.base_url}/responses",
        content=raw,
        headers=auth(stack) | {"content-type": "application/json"},
        timeout=60,
    )
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"metadata": {"k": "\ud800"}}, "metadata.k"),
        ({"prompt_cache_key": "a\udfffb"}, "prompt_cache_key"),
        ({"input": [{"role": "user", "content": "x", "note": "\ud800"}]}, "input[0].note"),
        ({"input": [{"role": "user", "content": "x", "big": 2**70}]}, None),
    ],
)
def test_values_json_cannot_write_back_are_refused(
    stack: Stack, extra: dict[str, Any], param: str | None
) -> None:
    raw = json.dumps({"model": "gpt-5.2", "input": "x"} | extra)
    reply = httpx.post(
        f"{stack.base_url}/responses",
        content=raw,
        headers=auth(stack) | {"content-type": "application/json"},
        timeout=60,
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_not_json_and_no_license(stack: Stack) -> None:
    reply = httpx.post(f"{stack.base_url}/responses", content=b"{nope", headers=auth(stack), timeout=30)
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"
    reply = httpx.post(f"{stack.base_url}/responses", json={"model": "gpt-5.2", "input": "x"}, timeout=30)
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    for method in ("GET", "DELETE"):
        reply = httpx.request(method, f"{stack.base_url}/responses/resp_x", timeout=30)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    reply = httpx.get(f"{stack.base_url}/responses/bad%20id", headers=auth(stack), timeout=30)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "id"


def test_upstream_failure_mid_stream_is_response_failed(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-5.2", input="sim: error=internal after=2", stream=True))
    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None and failed.error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))


# --- frameworks -----------------------------------------------------------------------------------


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up the status of an order by its id."""
    return f"order {order_id} shipped yesterday"


class OrderStatus(BaseModel):
    order_id: str
    status: str


@pytest.mark.asyncio
async def test_openai_agents_default_agent_with_tool_and_output_type(stack: Stack) -> None:
    set_tracing_disabled(True)
    # The default model of an Agent is the Responses API on the default client.
    default = openai.AsyncOpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    set_default_openai_client(default)
    agent = Agent(
        name="support",
        instructions="Answer order questions using the tools.",
        tools=[lookup_order],
        model="gpt-5.2",
        output_type=OrderStatus,
    )
    result = await Runner.run(agent, "Please lookup_order for order 7", max_turns=4)
    # The simulator, told the schema, answers an example of it (simulator/script.py: example_args).
    assert result.final_output == OrderStatus(order_id="sim-order_id", status="sim-status")
    outputs = [i for i in result.new_items if i.type == "tool_call_output_item"]
    assert outputs and "shipped yesterday" in str(outputs[0].output)


@pytest.mark.asyncio
async def test_openai_agents_streamed_run(stack: Stack) -> None:
    set_tracing_disabled(True)
    default = openai.AsyncOpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)
    set_default_openai_client(default)
    agent = Agent(name="support", tools=[lookup_order], model="gpt-5.2", output_type=OrderStatus)
    run = Runner.run_streamed(agent, "Please lookup_order for order 9", max_turns=4)
    kinds = [event.type async for event in run.stream_events()]
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert run.final_output == OrderStatus(order_id="sim-order_id", status="sim-status")


def test_langchain_chat_openai_use_responses_api(stack: Stack) -> None:
    llm = ChatOpenAI(
        model="gpt-5.2",
        base_url=stack.base_url,
        api_key=SecretStr(stack.license),
        max_retries=0,
        use_responses_api=True,
    )
    reply = llm.invoke("Hello from LangChain")
    assert reply.text.endswith("You said: Hello from LangChain")
    bound = llm.bind_tools([WEATHER])
    ai = bound.invoke("Use get_current_weather please")
    assert ai.tool_calls and ai.tool_calls[0]["name"] == "get_current_weather"
    assert ai.tool_calls[0]["args"] == WEATHER_ARGS
    streamed = "".join(chunk.text for chunk in llm.stream("sim: text=streamed_via_langchain"))
    assert streamed == "streamed via langchain"


NODE_SCRIPT = """
import OpenAI from "openai";
const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0 });
const plain = await client.responses.create({ model: "gpt-5.2", input: "hello from node" });
let streamed = "";
const stream = await client.responses.create(
  { model: "gpt-5.2", input: "sim: text=node_stream", stream: true });
for await (const event of stream) if (event.type === "response.output_text.delta") streamed += event.delta;
const tools = [{ type: "function", name: "get_current_weather", parameters: { type: "object",
  properties: { location: { type: "string" } }, required: ["location"] } }];
const call = await client.responses.create({ model: "gpt-5.2", input: "Use get_current_weather", tools });
console.log(JSON.stringify({ plain: plain.output_text, streamed, call: call.output[0] }));
"""


@pytest.fixture(scope="module")
def node_openai(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return npm_project(tmp_path_factory, "openai@^6")


def test_openai_node_sdk_responses(stack: Stack, node_openai: Path) -> None:
    result = run_node(stack, node_openai, NODE_SCRIPT)
    assert result["plain"] == "Simulated gpt-5.2 answer. You said: hello from node"
    assert result["streamed"] == "node stream"
    assert result["call"]["type"] == "function_call" and result["call"]["name"] == "get_current_weather"
    assert json.loads(result["call"]["arguments"]) == {"location": "sim-location"}


AI_SDK_SCRIPT = """
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, generateObject, streamText, tool, stepCountIs } from "ai";
import { z } from "zod";
// The default provider, openai(model), speaks the Responses API.
const openai = createOpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY });
const out = {};
out.plain = (await generateText({ model: openai("gpt-5.2"), prompt: "hello from the ai sdk" })).text;
const streamed = streamText(
  { model: openai("claude-4.5-sonnet-thinking"), prompt: "sim: text=ai_sdk_stream" });
out.stream = "";
for await (const delta of streamed.textStream) out.stream += delta;
out.reasoning = (await streamed.reasoningText) ?? null;
const weather = tool({
  description: "Get the weather", inputSchema: z.object({ location: z.string() }),
  execute: async ({ location }) => `21 degrees in ${location}`,
});
const withTools = await generateText({
  model: openai("gpt-5.2"), prompt: "Use get_current_weather for Oslo",
  tools: { get_current_weather: weather }, stopWhen: stepCountIs(3),
});
out.tools = withTools.text;
out.object = (await generateObject({
  model: openai("gpt-5.2"), prompt: "Weather?", schema: z.object({ city: z.string(), celsius: z.number() }),
})).object;
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def node_ai_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return npm_project(tmp_path_factory, "ai@^6", "@ai-sdk/openai@^3", "zod@^4")


def test_vercel_ai_sdk_openai_provider(stack: Stack, node_ai_sdk: Path) -> None:
    result = run_node(stack, node_ai_sdk, AI_SDK_SCRIPT)
    assert result["plain"] == "Simulated gpt-5.2 answer. You said: hello from the ai sdk"
    assert result["stream"] == "ai sdk stream"
    assert result["reasoning"].startswith("Considering the request")
    assert result["tools"].startswith("The tools answered: get_current_weather")
    assert "21 degrees in sim-location" in result["tools"]
    assert result["object"] == {"city": "sim-city", "celsius": 1.5}
