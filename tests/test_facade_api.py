"""The facade served for real (uvicorn on loopback) against the scripted fake core, driven by
the official OpenAI SDK and raw httpx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
)

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

PREFIXES = ["/cursor/v1", "/v1"]
AUTH = {"Authorization": f"Bearer {LICENSE}"}
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there general kenobi"}]
WEATHER_TOOLS: list[ChatCompletionFunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string"}},
                "required": ["tz"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    },
]


@pytest_asyncio.fixture(params=PREFIXES)
async def client(facade: RunningFacade, request: pytest.FixtureRequest) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(base_url=facade.url + request.param, api_key=LICENSE, max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


@pytest_asyncio.fixture
async def http(facade: RunningFacade) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=facade.url, timeout=10) as raw:
        yield raw


def sse_payloads(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    frames = [frame for frame in text.split("\n\n") if frame]
    assert all(frame.startswith("data: ") for frame in frames), frames
    return [frame.removeprefix("data: ") for frame in frames]


async def collect(stream: Any) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


# --- happy paths --------------------------------------------------------------------------------


async def test_non_stream_text(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="echo", messages=HELLO)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "hello there general kenobi"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 7
    assert completion.usage.total_tokens == 7 + completion.usage.completion_tokens


async def test_stream_text_in_several_chunks(client: AsyncOpenAI) -> None:
    chunks = await collect(await client.chat.completions.create(model="echo", messages=HELLO, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    contents = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(contents) == 4
    assert "".join(contents) == "hello there general kenobi"
    assert {c.id for c in chunks} == {chunks[0].id}
    assert {c.created for c in chunks} == {chunks[0].created}
    assert {c.model for c in chunks} == {"echo"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].delta.content is None
    assert all(c.usage is None for c in chunks)


async def test_stream_include_usage_ends_with_usage_chunk(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="echo",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = await collect(stream)
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 4
    assert usage_chunk.usage.total_tokens == 11
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])


async def test_reasoning_content_streamed_and_aggregated(client: AsyncOpenAI) -> None:
    chunks = await collect(await client.chat.completions.create(model="think", messages=HELLO, stream=True))
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks if c.choices
    )
    assert reasoning == "Let me think."
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "42"

    completion = await client.chat.completions.create(model="think", messages=HELLO)
    message = completion.choices[0].message
    assert message.content == "42"
    assert (message.model_extra or {})["reasoning_content"] == "Let me think."
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 3


async def test_streamed_tool_calls_reassembled_by_sdk_helper(client: AsyncOpenAI) -> None:
    async with client.chat.completions.stream(
        model="tools",
        messages=HELLO,
        tools=WEATHER_TOOLS,
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("call_1", "get_weather"), ("call_2", "get_time")]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert json.loads(calls[1].function.arguments) == {"tz": "UTC"}


async def test_streamed_tool_call_deltas(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="tools",
        messages=HELLO,
        tools=WEATHER_TOOLS,
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    first_deltas: list[Any] = []
    async for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta.index not in calls:
                first_deltas.append(delta)
                calls[delta.index] = {"id": delta.id or "", "name": "", "arguments": ""}
            else:
                assert delta.id is None
                assert delta.type is None
                assert delta.function is not None
                assert delta.function.name is None
            assert delta.function is not None
            calls[delta.index]["name"] += delta.function.name or ""
            calls[delta.index]["arguments"] += delta.function.arguments or ""
    assert all(d.type == "function" for d in first_deltas)
    assert calls == {
        0: {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_2", "name": "get_time", "arguments": '{"tz": "UTC"}'},
    }


async def test_non_stream_tool_calls(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="tools", messages=HELLO, tools=WEATHER_TOOLS)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.id for c in calls] == ["call_1", "call_2"]
    assert calls[0].type == "function"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}


async def test_length_finish_reason(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="length", messages=HELLO, max_tokens=1)
    assert completion.choices[0].finish_reason == "length"


async def test_request_reaches_core_converted(http: httpx.AsyncClient) -> None:
    body = {
        "model": "inspect",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                    },
                ],
            },
        ],
        "temperature": 0.5,
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "stop": "END",
        "reasoning_effort": "high",
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "tools": WEATHER_TOOLS,
        "parallel_tool_calls": False,
        "user": "u-1",
        "some_future_field": {"ignored": True},
    }
    response = await http.post(
        "/cursor/v1/chat/completions", json=body, headers=AUTH | {"X-Request-ID": "trace-123"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "trace-123"
    completion = response.json()
    seen = json.loads(completion["choices"][0]["message"]["content"])
    request, metadata = seen["request"], seen["metadata"]
    assert request["requestId"] == completion["id"]
    assert metadata["authorization"] == f"Bearer {LICENSE}"
    assert metadata["x-request-id"] == "trace-123"
    assert request["messages"][1]["content"][1]["image"] == {
        "url": "data:image/png;base64,AAAA",
        "detail": "low",
    }
    assert request["sampling"] == {"temperature": 0.5, "maxTokens": 20, "stop": ["END"]}
    assert request["reasoningEffort"] == "REASONING_EFFORT_HIGH"
    assert request["toolChoice"] == {"mode": "MODE_FUNCTION", "functionName": "get_weather"}
    assert request["tools"][0]["parameters"]["required"] == ["city"]
    assert request["parallelToolCalls"] is False
    assert request["user"] == "u-1"


async def test_request_id_defaults_to_completion_id(http: httpx.AsyncClient) -> None:
    body = {"model": "inspect", "messages": HELLO}
    response = await http.post("/v1/chat/completions", json=body, headers=AUTH)
    completion = response.json()
    seen = json.loads(completion["choices"][0]["message"]["content"])
    assert seen["metadata"]["x-request-id"] == completion["id"] == response.headers["x-request-id"]


# --- errors -------------------------------------------------------------------------------------


async def test_wrong_key_is_401(facade: RunningFacade) -> None:
    for prefix in PREFIXES:
        async with AsyncOpenAI(base_url=facade.url + prefix, api_key="sk-wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as non_stream:
                await bad.chat.completions.create(model="echo", messages=HELLO)
            assert isinstance(non_stream.value.body, dict)
            assert non_stream.value.body["code"] == "invalid_api_key"
            assert non_stream.value.body["type"] == "invalid_request_error"
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(model="echo", messages=HELLO, stream=True)
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()


async def test_missing_authorization_is_401(http: httpx.AsyncClient, fake_core: FakeCore) -> None:
    response = await http.post(
        "/v1/chat/completions", json={"model": "echo", "messages": HELLO, "stream": True}
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "authorization" not in fake_core.metadata[-1]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "echo", "messages": []}, "messages"),
        ({"model": "echo", "messages": [{"role": "user", "content": 123}]}, "messages[0].content"),
        ({"model": "echo", "messages": HELLO, "temperature": "hot"}, "temperature"),
        ({"model": "echo", "messages": HELLO, "stream": "yes"}, "stream"),
        ({"model": "echo", "messages": HELLO, "n": 2}, "n"),
        ({"model": "echo", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (
            {
                "model": "echo",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}],
            },
            "messages[0].content[0].image_url.url",
        ),
        ({"model": "echo", "messages": HELLO, "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": HELLO}, "model"),
    ],
)
async def test_invalid_request_is_400_with_param(
    client: AsyncOpenAI, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.post("/chat/completions", cast_to=object, body=body)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]


async def test_unparsable_json_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions", content=b"{not json", headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "JSON" in response.json()["error"]["message"]


async def test_too_large_body_is_413(http: httpx.AsyncClient, facade: RunningFacade) -> None:
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * facade.settings.max_body_bytes}]}
    response = await http.post("/v1/chat/completions", json=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}]}'

    response = await http.post(
        "/v1/chat/completions", content=chunked(), headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


ERROR_CASES = [
    # ErrorCode name, HTTP status, type, code, SDK exception
    ("invalid_request", 400, "invalid_request_error", None, openai.BadRequestError),
    ("unauthenticated", 401, "invalid_request_error", "invalid_api_key", openai.AuthenticationError),
    ("model_not_allowed", 403, "invalid_request_error", "model_not_allowed", openai.PermissionDeniedError),
    ("model_not_found", 404, "invalid_request_error", "model_not_found", openai.NotFoundError),
    ("rate_limited", 429, "rate_limit_error", "rate_limit_exceeded", openai.RateLimitError),
    ("quota_exceeded", 429, "insufficient_quota", "insufficient_quota", openai.RateLimitError),
    ("upstream_unavailable", 503, "server_error", "upstream_unavailable", openai.InternalServerError),
    ("no_account_available", 503, "server_error", "no_account_available", openai.InternalServerError),
    ("upstream_outdated_client", 502, "server_error", "upstream_outdated_client", openai.InternalServerError),
    ("upstream_auth", 502, "server_error", "upstream_auth", openai.InternalServerError),
    ("upstream_error", 502, "server_error", "upstream_error", openai.InternalServerError),
    ("upstream_timeout", 504, "server_error", "upstream_timeout", openai.InternalServerError),
    ("internal", 500, "server_error", "internal_error", openai.InternalServerError),
    ("output_invalid", 502, "server_error", "output_schema_mismatch", openai.InternalServerError),
    ("response_not_found", 404, "invalid_request_error", "response_not_found", openai.NotFoundError),
]


@pytest.mark.parametrize(("name", "status", "type_", "code", "exc"), ERROR_CASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_error_code_maps_to_http_status(
    http: httpx.AsyncClient,
    client: AsyncOpenAI,
    name: str,
    status: int,
    type_: str,
    code: str | None,
    exc: type[openai.APIStatusError],
    stream: bool,
) -> None:
    body = {"model": f"fail-{name}", "messages": HELLO, "stream": stream}
    response = await http.post("/cursor/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error == {
        "message": f"scripted fail-{name}",
        "type": type_,
        "param": {"invalid_request": "messages[0].content", "model_not_found": "model"}.get(name),
        "code": code,
    }
    if name == "rate_limited":
        assert response.headers["retry-after"] == "2"  # 1500 ms, rounded up
    else:
        assert "retry-after" not in response.headers
    with pytest.raises(exc) as caught:
        await client.chat.completions.create(model=f"fail-{name}", messages=HELLO, stream=stream)
    assert caught.value.status_code == status


@pytest.mark.parametrize(
    ("status", "http_status", "message"),
    [
        ("unavailable", 503, "core is unavailable"),
        ("cancelled", 503, "core dropped the request"),
        ("deadline_exceeded", 504, "timed out"),
        ("internal", 500, ""),
    ],
)
async def test_error_without_error_info_does_not_leak(
    http: httpx.AsyncClient, status: str, http_status: int, message: str
) -> None:
    body = {"model": f"bare-{status}", "messages": HELLO}
    response = await http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == http_status
    error = response.json()["error"]
    assert message in error["message"]
    assert "internal detail" not in response.text


async def test_core_unreachable_is_503() -> None:
    dead = free_socket()  # bound but never listening: connections are refused
    settings = FacadeSettings(core_address=f"127.0.0.1:{dead.getsockname()[1]}", request_timeout=5)
    try:
        async for running in serve_facade(settings):
            async with httpx.AsyncClient(base_url=running.url, timeout=10) as raw:
                for stream in (False, True):
                    body = {"model": "echo", "messages": HELLO, "stream": stream}
                    response = await raw.post("/v1/chat/completions", json=body, headers=AUTH)
                    assert response.status_code == 503
                    assert "core is unavailable" in response.json()["error"]["message"]
                health = await raw.get("/healthz")
                assert health.status_code == 200
                assert health.json()["status"] == "ok"
                assert health.json()["core"] != "ready"
    finally:
        dead.close()


async def test_mid_stream_error_is_sse_error_then_done(http: httpx.AsyncClient, client: AsyncOpenAI) -> None:
    body = {"model": "midfail", "messages": HELLO, "stream": True}
    response = await http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[1])["choices"][0]["delta"]["content"] == "partial"
    assert json.loads(payloads[-2]) == {
        "error": {
            "message": "upstream broke mid-answer",
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    with pytest.raises(openai.APIError, match="upstream broke mid-answer"):
        await collect(await client.chat.completions.create(model="midfail", messages=HELLO, stream=True))


async def test_stream_ends_with_done(http: httpx.AsyncClient) -> None:
    body = {"model": "echo", "messages": HELLO, "stream": True}
    response = await http.post("/cursor/v1/chat/completions", json=body, headers=AUTH)
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[0])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert json.loads(payloads[-2])["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


# --- cancellation -------------------------------------------------------------------------------


async def test_client_disconnect_mid_stream_cancels_core_call(
    facade: RunningFacade, fake_core: FakeCore
) -> None:
    fake_core.cancelled.clear()
    body = {"model": "stall", "messages": HELLO, "stream": True}
    async with (
        httpx.AsyncClient(base_url=facade.url, timeout=10) as raw,
        raw.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if "partial" in line:
                break
    # Leaving the blocks closed the connection mid-stream.
    assert await fake_core.wait_cancelled("stall", timeout=1.0)


@pytest.mark.parametrize(("model", "stream"), [("stall", False), ("silent", True)])
async def test_client_disconnect_while_waiting_cancels_core_call(
    facade: RunningFacade, fake_core: FakeCore, model: str, stream: bool
) -> None:
    """Before the first byte of the answer: the unary call, or a stream's first event."""
    fake_core.cancelled.clear()
    seen = len(fake_core.requests)
    body = {"model": model, "messages": HELLO, "stream": stream}
    async with httpx.AsyncClient(base_url=facade.url, timeout=10) as raw:
        pending = asyncio.create_task(raw.post("/v1/chat/completions", json=body, headers=AUTH))
        while len(fake_core.requests) == seen:
            await asyncio.sleep(0.01)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
    assert await fake_core.wait_cancelled(model, timeout=1.0)


# --- models, routes, schema ---------------------------------------------------------------------


async def test_models_list_and_retrieve(client: AsyncOpenAI) -> None:
    models = [m async for m in client.models.list()]
    assert [m.id for m in models] == ["echo", "think", "tools", "vendor/with-slash"]
    assert all(m.object == "model" for m in models)
    echo = await client.models.retrieve("echo")
    assert (echo.id, echo.owned_by, echo.created) == ("echo", "cursor", 1_700_000_000)
    slashed = await client.models.retrieve("vendor/with-slash")
    assert slashed.owned_by == "vendor"
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("no-such-model")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"


async def test_openapi_documents_chat_request(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    for prefix in PREFIXES:
        operation = spec["paths"][f"{prefix}/chat/completions"]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ChatCompletionRequest")
        assert f"{prefix}/models" in spec["paths"]
    request_schema = spec["components"]["schemas"]["ChatCompletionRequest"]
    assert {"model", "messages"} <= set(request_schema["required"])
    assert {"tools", "tool_choice", "stream_options", "reasoning_effort"} <= set(request_schema["properties"])


async def test_unknown_route_and_method_are_openai_errors(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (GET /v1/nope)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    response = await http.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_healthz(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["core"] in {"ready", "idle", "connecting"}


async def test_cors_only_when_configured(http: httpx.AsyncClient, fake_core: FakeCore) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    response = await http.options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in response.headers

    settings = FacadeSettings(
        core_address=f"127.0.0.1:{fake_core.port}", cors_origins=["https://app.example"]
    )
    async for running in serve_facade(settings):
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as raw:
            response = await raw.options("/v1/chat/completions", headers=preflight)
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == "https://app.example"
