"""The inference dialect end to end (simulator, core, facade as processes): what only this
dialect carries (sampling, real token counts), its two error paths, heartbeats, HTTP/2 only."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pyqwest
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from aiserver.v1 import inference_pb2 as inf
from aiserver.v1.inference_connect import InferenceServiceClient
from core.upstream.errors import Failure, classify
from core.upstream.headers import ClientIdentity, ide_headers
from tests.procs import Stack, start_stack

FAST_TIMEOUTS = {"CURSORGATE_UPSTREAM_IDLE_TIMEOUT": "1", "CURSORGATE_UPSTREAM_CONNECT_TIMEOUT": "1.5"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("inference"), FAST_TIMEOUTS, dialect="inference")
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def client(gateway: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.license, max_retries=0)


def test_sampling_reaches_cursor(client: openai.OpenAI, gateway: Stack) -> None:
    client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "sample"}],
        max_tokens=77,
        temperature=0.25,
        top_p=0.5,
        stop=["STOP1", "STOP2"],
    )
    entry = gateway.chat_requests()[-1]
    assert entry["dialect"] == "inference"
    view = entry["view"]
    # 0.25 and 0.5 are exact in float32, the type of model_config on the wire.
    assert (view["max_tokens"], view["temperature"], view["top_p"]) == (77, 0.25, 0.5)
    assert view["stop"] == ["STOP1", "STOP2"]
    config = entry["request"]["invokeModel"]["request"]["modelConfig"]
    assert config["maxTokens"] == 77 and config["stopSequences"] == ["STOP1", "STOP2"]


def test_no_sampling_sends_no_model_config(client: openai.OpenAI, gateway: Stack) -> None:
    client.chat.completions.create(model="gpt-5.2", messages=[{"role": "user", "content": "plain"}])
    assert "modelConfig" not in gateway.chat_requests()[-1]["request"]["invokeModel"]["request"]


# The simulator's documented counting rule (simulator/script.py): 3 characters a token, rounded
# up; a prompt counts its text plus 8 per message. Worked out by hand for this prompt:
# "sim: text=abcdefghijkl" is 22 characters + 8 = 30 -> 10 prompt tokens; the reply
# "abcdefghijkl" is 12 characters -> 4 completion tokens. (The gateway's own estimate, 4
# characters a token, would give 3 for the reply.)
USAGE_PROMPT = "sim: text=abcdefghijkl"


@pytest.mark.parametrize("stream", [False, True])
def test_real_usage_reaches_the_caller(client: openai.OpenAI, stream: bool) -> None:
    messages: Any = [{"role": "user", "content": USAGE_PROMPT}]
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="gpt-5.2", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )
        usage = chunks[-1].usage
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        reply = client.chat.completions.create(model="gpt-5.2", messages=messages)
        usage = reply.usage
        text = reply.choices[0].message.content or ""
    assert text == "abcdefghijkl"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 4, 14)


def call(gateway: Stack, prompt: str, stream: bool) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "gpt-5.2", "messages": [{"role": "user", "content": prompt}], "stream": stream},
        headers={"Authorization": f"Bearer {gateway.license}"},
        timeout=30,
    )


def sse_events(response: httpx.Response) -> list[Any]:
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        # In band: invocation_end.error (rate_limited), an error part first (provider).
        ("error=rate_limited retry_after=0.2 after=2", "rate_limit_exceeded"),
        ("error=provider after=2", "upstream_unavailable"),
        # A Connect end-stream error.
        ("error=outdated after=2", "upstream_outdated_client"),
    ],
)
def test_mid_stream_errors_on_both_paths(gateway: Stack, directive: str, code: str) -> None:
    response = call(gateway, f"hello\nsim: chunks=6 {directive}", stream=True)
    assert response.status_code == 200
    events = sse_events(response)
    content = [e for e in events if e.get("choices") and e["choices"][0]["delta"].get("content")]
    assert len(content) == 2
    assert events[-1]["error"]["code"] == code
    time.sleep(0.3)  # let the account's cool-down (the retry hint) pass


@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("error=region", 403, "model_not_allowed"),  # in band
        ("error=deprecated", 502, "upstream_outdated_client"),  # end-stream
    ],
)
def test_errors_before_the_answer_on_both_paths(
    gateway: Stack, directive: str, status: int, code: str
) -> None:
    response = call(gateway, f"hello\nsim: {directive}", stream=False)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_heartbeats_keep_a_long_first_pause_alive(gateway: Stack) -> None:
    """first_ms=2500 is longer than the gateway's 1.5 s connect and 1 s idle timeouts: only the
    simulator's heartbeats keep the call alive."""
    response = call(gateway, "slow start\nsim: first_ms=2500 text=late", stream=False)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "late"


def test_http1_is_refused_with_464(gateway: Stack) -> None:
    response = httpx.post(
        f"{gateway.sim_url}/aiserver.v1.InferenceService/RunInference",
        content=b"",
        headers={"content-type": "application/connect+proto"},
    )
    assert response.status_code == 464


def test_ide_profile_reaches_cursor(client: openai.OpenAI, gateway: Stack) -> None:
    client.chat.completions.create(model="gpt-5.2", messages=[{"role": "user", "content": "who"}])
    headers = gateway.chat_requests()[-1]["headers"]
    assert headers["x-cursor-client-type"] == "ide"
    assert headers["x-cursor-client-version"].startswith("3.")
    assert headers["connect-content-encoding"] == "gzip"
    assert gateway.token not in json.dumps(gateway.chat_requests())


TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


def test_tool_round_trip_on_the_wire(client: openai.OpenAI, gateway: Stack) -> None:
    """What RunInference carries for a round trip: the schema wrapped as {"jsonSchema": ...}, the
    call as a Struct plus its JSON text, the result as a role-3 message with a string Value."""
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Use get_time"},
    ]
    first = client.chat.completions.create(model="gpt-5.2", messages=messages, tools=[TIME])
    (call,) = first.choices[0].message.tool_calls or []
    assert call.type == "function" and json.loads(call.function.arguments) == {"tz": "sim-tz"}
    sent = gateway.chat_requests()[-1]["request"]["invokeModel"]["request"]
    assert sent["tools"] == [
        {
            "name": "get_time",
            "description": "The time in a zone.",
            "parameters": {"jsonSchema": TIME["function"]["parameters"]},
        }
    ]
    assert sent["messages"][0] == {"role": "INFERENCE_MESSAGE_ROLE_SYSTEM", "text": "Be brief."}

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "12:00"},
    ]
    final = client.chat.completions.create(model="gpt-5.2", messages=messages, tools=[TIME])
    assert final.choices[0].message.content == "The tools answered: get_time -> 12:00"
    sent = gateway.chat_requests()[-1]["request"]["invokeModel"]["request"]
    roles = [m["role"].removeprefix("INFERENCE_MESSAGE_ROLE_") for m in sent["messages"]]
    assert roles == ["SYSTEM", "USER", "ASSISTANT", "TOOL"]
    (tool_call,) = sent["messages"][2]["toolCalls"]
    assert tool_call["toolCallId"] == call.id and tool_call["args"] == {"tz": "sim-tz"}
    assert json.loads(tool_call["rawToolCallArgs"]) == {"tz": "sim-tz"}
    (result,) = sent["messages"][3]["toolContent"]["parts"]
    assert result == {"toolCallId": call.id, "toolName": "get_time", "result": "12:00"}


async def _open_run(sim_url: str, headers: dict[str, str]) -> list[str]:
    """A bare RunInference call against the simulator: run_request, then finish_run after run_ready."""
    client = InferenceServiceClient(
        sim_url, http_client=pyqwest.Client(pyqwest.HTTPTransport(http_version=pyqwest.HTTPVersion.HTTP2))
    )
    queue: asyncio.Queue[inf.RunInferenceClientMessage | None] = asyncio.Queue()
    run = inf.RunInferenceRunRequest(
        conversation_id="c", requested_model=inf.InferenceRequestedModel(model_id="gpt-5.2")
    )
    queue.put_nowait(inf.RunInferenceClientMessage(run_request=run))

    async def outgoing() -> AsyncIterator[inf.RunInferenceClientMessage]:
        while (message := await queue.get()) is not None:
            yield message

    kinds = []
    async for frame in client.run_inference(outgoing(), headers=headers, timeout_ms=10_000):
        kinds.append(str(frame.WhichOneof("message")))
        queue.put_nowait(inf.RunInferenceClientMessage(finish_run=inf.RunInferenceFinishRun()))
        queue.put_nowait(None)
    return kinds


def ide(token: str, **changes: str) -> dict[str, str]:
    identity = ClientIdentity(client_version="3.18.9", commit="2ba48ff3f7514cc4643c52ca9f7b3173d9b66130")
    return {**ide_headers(token, identity), **changes}


def test_simulator_checks_the_ide_profile(gateway: Stack) -> None:
    assert asyncio.run(_open_run(gateway.sim_url, ide(gateway.token))) == ["run_ready"]
    for wrong in (
        {"x-cursor-client-version": "2.3.41"},
        {"x-cursor-client-type": "cli"},
    ):
        with pytest.raises(ConnectError) as caught:
            asyncio.run(_open_run(gateway.sim_url, ide(gateway.token, **wrong)))
        assert classify(caught.value).failure is Failure.OUTDATED_CLIENT, wrong
    for broken in ({"x-cursor-checksum": "nope"}, {"x-cursor-client-commit": ""}):
        with pytest.raises(ConnectError) as caught:
            asyncio.run(_open_run(gateway.sim_url, ide(gateway.token, **broken)))
        assert caught.value.code == Code.INVALID_ARGUMENT, broken


def test_max_mode_rides_the_requested_model(client: openai.OpenAI, gateway: Stack) -> None:
    client.chat.completions.create(
        model="claude-4.5-sonnet-max", messages=[{"role": "user", "content": "big"}]
    )
    view = gateway.last_view()
    assert (view["model"], view["max_mode"]) == ("claude-4.5-sonnet", True)
    client.chat.completions.create(model="claude-4.5-sonnet", messages=[{"role": "user", "content": "small"}])
    assert gateway.last_view()["max_mode"] is False
