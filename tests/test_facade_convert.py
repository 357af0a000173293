"""Pure unit tests of the OpenAI <-> cursorgate.v1 seam, the error table and the settings."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, json_format
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cursorgate.v1 import chat_pb2, errors_pb2, models_pb2
from facade.config import FacadeSettings
from facade.core_client import call_metadata, request_id_from
from facade.errors import ERROR_TABLE, OpenAIError, error_info_from_metadata, from_error_info, param_from_loc
from facade.openai_chat.convert import (
    ChunkStream,
    model_list,
    new_completion_id,
    to_chat_request,
    to_completion,
)
from facade.openai_chat.schemas import INT32_MAX, ChatCompletionRequest
from facade.openai_responses.convert import input_items
from facade.openai_responses.convert import to_chat_request as responses_request
from facade.openai_responses.protocol import CreateResponseRequest

ErrorCode = errors_pb2.ErrorCode


def request(**fields: Any) -> ChatCompletionRequest:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return ChatCompletionRequest.model_validate(body | fields)


# --- request conversion ---------------------------------------------------------------------


def test_messages_of_every_role() -> None:
    body = request(
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "developer", "content": "dev"},
            {
                "role": "user",
                "name": "ann",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "hmm",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "result"},
        ]
    )
    out = to_chat_request(body, "chatcmpl-1")
    assert out.request_id == "chatcmpl-1"
    roles = [m.role for m in out.messages]
    assert roles == [
        chat_pb2.ROLE_SYSTEM,
        chat_pb2.ROLE_DEVELOPER,
        chat_pb2.ROLE_USER,
        chat_pb2.ROLE_ASSISTANT,
        chat_pb2.ROLE_TOOL,
    ]
    user = out.messages[2]
    assert user.name == "ann"
    assert user.content[0].text == "look"
    assert user.content[1].image == chat_pb2.Image(url="https://x.test/a.png", detail="high")
    assert user.content[2].image.url == "data:image/png;base64,AA=="
    assert user.content[2].image.detail == ""
    assistant = out.messages[3]
    assert list(assistant.content) == []
    assert assistant.reasoning == "hmm"
    assert assistant.tool_calls[0] == chat_pb2.ToolCall(id="call_1", name="f", arguments="{}")
    assert out.messages[4].tool_call_id == "call_1"
    assert out.messages[4].content[0].text == "result"


def test_tools_and_tool_choice() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "nullable": None}
    body = request(
        tools=[{"type": "function", "function": {"name": "f", "description": "d", "parameters": schema}}],
        tool_choice="required",
        parallel_tool_calls=True,
    )
    out = to_chat_request(body, "id")
    tool = out.tools[0]
    assert (tool.name, tool.description, tool.strict) == ("f", "d", False)
    assert json_format.MessageToDict(tool.parameters) == schema
    assert out.tool_choice.mode == chat_pb2.ToolChoice.MODE_REQUIRED
    assert out.HasField("parallel_tool_calls")
    assert out.parallel_tool_calls

    named = to_chat_request(request(tool_choice={"type": "function", "function": {"name": "f"}}), "id")
    assert named.tool_choice == chat_pb2.ToolChoice(mode=chat_pb2.ToolChoice.MODE_FUNCTION, function_name="f")
    unset = to_chat_request(request(), "id")
    assert not unset.HasField("tool_choice")
    assert not unset.HasField("parallel_tool_calls")


def test_sampling_options() -> None:
    out = to_chat_request(request(max_tokens=5, stop="X", seed=-3, presence_penalty=1, top_p=0.5), "id")
    sampling = out.sampling
    assert sampling.max_tokens == 5
    assert list(sampling.stop) == ["X"]
    assert sampling.seed == -3
    assert sampling.presence_penalty == 1.0
    assert sampling.top_p == 0.5
    assert not sampling.HasField("temperature")
    assert not sampling.HasField("frequency_penalty")
    both = to_chat_request(request(max_tokens=5, max_completion_tokens=9, stop=["a", "b"]), "id")
    assert both.sampling.max_tokens == 9
    assert list(both.sampling.stop) == ["a", "b"]


# OpenAI's documented reasoning_effort values and the core enum each must become, written out: a
# value dropped from the converter's table fails here instead of vanishing from the test.
EFFORTS = [
    ("none", "REASONING_EFFORT_NONE"),
    ("minimal", "REASONING_EFFORT_MINIMAL"),
    ("low", "REASONING_EFFORT_LOW"),
    ("medium", "REASONING_EFFORT_MEDIUM"),
    ("high", "REASONING_EFFORT_HIGH"),
    ("xhigh", "REASONING_EFFORT_XHIGH"),
]


@pytest.mark.parametrize(("effort", "expected"), EFFORTS)
def test_reasoning_effort(effort: str, expected: str) -> None:
    out = to_chat_request(request(reasoning_effort=effort), "id")
    assert chat_pb2.ReasoningEffort.Name(out.reasoning_effort) == expected


def test_no_reasoning_effort_stays_unspecified() -> None:
    out = to_chat_request(request(), "id")
    assert chat_pb2.ReasoningEffort.Name(out.reasoning_effort) == "REASONING_EFFORT_UNSPECIFIED"


@pytest.mark.parametrize(
    "fields",
    [
        {"messages": []},
        {"n": 2},
        {"temperature": "0.5"},
        {"max_tokens": INT32_MAX + 1},
        {"reasoning_effort": "extreme"},
        {"stream": 1},
        {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
    ],
)
def test_invalid_requests_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        request(**fields)


def test_unknown_fields_tolerated() -> None:
    body = request(logit_bias={"1": 2}, metadata={"k": "v"}, n=1, response_format={"type": "json_object"})
    assert to_chat_request(body, "id").model == "m"


# --- hypothesis: any valid request converts and keeps its key fields ---------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
texts = st.text(max_size=20)
content = (
    st.none()
    | texts
    | st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
            st.fixed_dictionaries(
                {
                    "type": st.just("image_url"),
                    "image_url": st.fixed_dictionaries(
                        {"url": texts}, optional={"detail": st.sampled_from(["auto", "low", "high"])}
                    ),
                }
            ),
        ),
        max_size=3,
    )
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {"id": texts, "type": st.just("function"), "function": st.fixed_dictionaries({"name": texts})},
        optional={},
    ),
    max_size=2,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]), "content": content},
        optional={
            "name": texts,
            "tool_calls": tool_calls,
            "tool_call_id": texts,
            "reasoning_content": texts,
        },
    ),
    min_size=1,
    max_size=4,
)
floats = st.floats(0, 1, allow_nan=False)
requests = st.fixed_dictionaries(
    {"model": texts, "messages": messages},
    optional={
        "tools": st.lists(
            st.fixed_dictionaries(
                {"type": st.just("function"), "function": st.fixed_dictionaries({"name": texts})},
                optional={},
            ),
            max_size=2,
        ),
        "tool_parameters": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        "tool_choice": st.sampled_from(["auto", "none", "required"])
        | st.fixed_dictionaries(
            {"type": st.just("function"), "function": st.fixed_dictionaries({"name": texts})}
        ),
        "parallel_tool_calls": st.booleans(),
        "stream": st.booleans(),
        "temperature": floats,
        "top_p": floats,
        "max_tokens": st.integers(1, INT32_MAX),
        "max_completion_tokens": st.integers(1, INT32_MAX),
        "stop": texts | st.lists(texts, max_size=4),
        "seed": st.integers(-(2**63), 2**63 - 1),
        "presence_penalty": st.floats(-2, 2, allow_nan=False),
        "reasoning_effort": st.sampled_from([effort for effort, _ in EFFORTS]),
        "user": texts,
        "n": st.just(1),
    },
)


@settings(max_examples=200, deadline=None)
@given(requests)
def test_any_valid_request_converts(raw: dict[str, Any]) -> None:
    parameters = raw.pop("tool_parameters", None)
    if parameters is not None and raw.get("tools"):
        raw["tools"][0]["function"]["parameters"] = parameters
    body = ChatCompletionRequest.model_validate(raw)
    out = to_chat_request(body, "chatcmpl-x")
    # Survives the wire, as core will see it.
    out = chat_pb2.ChatRequest.FromString(out.SerializeToString())
    assert out.model == raw["model"]
    assert out.request_id == "chatcmpl-x"
    assert len(out.messages) == len(raw["messages"])
    for sent, got in zip(raw["messages"], out.messages, strict=True):
        assert chat_pb2.Role.Name(got.role) == f"ROLE_{sent['role'].upper()}"
        if isinstance(sent["content"], str):
            assert [p.text for p in got.content] == [sent["content"]]
        elif sent["content"] is not None:
            assert len(got.content) == len(sent["content"])
        assert [c.id for c in got.tool_calls] == [c["id"] for c in sent.get("tool_calls", [])]
    assert [t.name for t in out.tools] == [t["function"]["name"] for t in raw.get("tools", [])]
    if parameters is not None and raw.get("tools"):
        assert json_format.MessageToDict(out.tools[0].parameters) == _as_struct_json(parameters)
    expected_max = raw.get("max_completion_tokens", raw.get("max_tokens"))
    assert (out.sampling.max_tokens if out.sampling.HasField("max_tokens") else None) == expected_max
    stop = raw.get("stop")
    assert list(out.sampling.stop) == ([stop] if isinstance(stop, str) else (stop or []))
    if "seed" in raw:
        assert out.sampling.seed == raw["seed"]
    if "temperature" in raw:
        assert out.sampling.temperature == raw["temperature"]


def _as_struct_json(value: Any) -> Any:
    """What a JSON value looks like after a Struct round trip: every number becomes a float."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [_as_struct_json(v) for v in value]
    return {k: _as_struct_json(v) for k, v in value.items()}


# --- event and response conversion ------------------------------------------------------------


def ev(**kind: Any) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(**kind)


def test_chunk_stream_order_and_shape() -> None:
    chunks = ChunkStream(completion_id="chatcmpl-1", model="m", include_usage=True, created=123)
    out = [chunks.first()]
    for event in [
        ev(reasoning=chat_pb2.ReasoningDelta(text="r")),
        ev(text=chat_pb2.TextDelta(text="t")),
        ev(tool_call=chat_pb2.ToolCallDelta(index=0, id="call_1", name="f", arguments="")),
        ev(tool_call=chat_pb2.ToolCallDelta(index=0, arguments="{}")),
        ev(usage=chat_pb2.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3, reasoning_tokens=1)),
        ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_TOOL_CALLS)),
    ]:
        out.extend(chunks.translate(event))
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in out]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "r", "reasoning": "r"},
        {"content": "t"},
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
        {},
        None,
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[-1]["choices"] == []
    assert out[-1]["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "completion_tokens_details": {"reasoning_tokens": 1},
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert all(c["usage"] is None for c in out[:-1])
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in out} == {
        ("chatcmpl-1", 123, "m", "chat.completion.chunk")
    }


def test_chunk_stream_without_usage() -> None:
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False)
    assert chunks.translate(ev(usage=chat_pb2.Usage(total_tokens=3))) == []
    finish = chunks.translate(ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_LENGTH)))
    assert len(finish) == 1
    assert finish[0]["choices"][0]["finish_reason"] == "length"
    assert "usage" not in finish[0]
    assert chunks.translate(chat_pb2.ChatEvent()) == []


def test_completion_with_text_and_reasoning() -> None:
    response = chat_pb2.ChatResponse(
        content="hi",
        reasoning="because",
        finish_reason=chat_pb2.FINISH_REASON_STOP,
        usage=chat_pb2.Usage(prompt_tokens=2, completion_tokens=3, reasoning_tokens=1),
    )
    out = to_completion(response, completion_id="chatcmpl-9", created=5, model="m")
    assert out["id"] == "chatcmpl-9"
    assert out["object"] == "chat.completion"
    assert out["model"] == "m"
    message = out["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "hi",
        "refusal": None,
        "reasoning_content": "because",
        "reasoning": "because",
    }
    assert out["usage"]["total_tokens"] == 5  # derived when core left it 0
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}


def test_completion_with_reasoning_inlined() -> None:
    response = chat_pb2.ChatResponse(
        content="hi", reasoning="because", finish_reason=chat_pb2.FINISH_REASON_STOP
    )
    out = to_completion(response, completion_id="c", created=0, model="m", inline_think=True)
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "<think>because</think>\n\nhi",
        "refusal": None,
    }


def test_first_chunk_has_null_content_unless_text_follows() -> None:
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False)
    call = ev(tool_call=chat_pb2.ToolCallDelta(index=0, id="call_1", name="f"))
    assert chunks.first(call)["choices"][0]["delta"] == {"role": "assistant", "content": None}
    thinking = ev(reasoning=chat_pb2.ReasoningDelta(text="r"))
    assert chunks.first(thinking)["choices"][0]["delta"] == {"role": "assistant", "content": None}
    text = ev(text=chat_pb2.TextDelta(text="t"))
    assert chunks.first(text)["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_chunk_stream_inlines_reasoning_as_think() -> None:
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False, inline_think=True)
    out = []
    for event in [
        ev(reasoning=chat_pb2.ReasoningDelta(text="r1")),
        ev(reasoning=chat_pb2.ReasoningDelta(text="r2")),
        ev(text=chat_pb2.TextDelta(text="t")),
        ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP)),
    ]:
        out.extend(chunks.translate(event))
    assert [c["choices"][0]["delta"] for c in out] == [
        {"content": "<think>r1"},
        {"content": "r2"},
        {"content": "</think>\n\nt"},
        {},
    ]
    # The SSE hot path closes it the same way.
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False, inline_think=True)
    chunks.translate(ev(reasoning=chat_pb2.ReasoningDelta(text="r")))
    assert b'"content":"</think>\\n\\nt"' in chunks.text("t")
    # Before a tool call (or the end), the close tag is a chunk of its own.
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False, inline_think=True)
    out = chunks.translate(ev(reasoning=chat_pb2.ReasoningDelta(text="r")))
    out += chunks.translate(ev(tool_call=chat_pb2.ToolCallDelta(index=0, id="call_1", name="f")))
    assert [c["choices"][0]["delta"] for c in out] == [
        {"content": "<think>r"},
        {"content": "</think>\n\n"},
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
            ]
        },
    ]


def test_completion_with_only_tool_calls() -> None:
    response = chat_pb2.ChatResponse(
        tool_calls=[chat_pb2.ToolCall(id="call_1", name="f", arguments='{"a": 1}')],
        finish_reason=chat_pb2.FINISH_REASON_TOOL_CALLS,
    )
    out = to_completion(response, completion_id="c", created=0, model="m")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert "reasoning_content" not in choice["message"]
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert "usage" not in out


def test_models() -> None:
    rich = models_pb2.Model(
        id="old-name",
        owned_by="anthropic",
        created=7,
        display_name="Claude 4.5 Sonnet",
        supports_thinking=True,
        supports_images=True,
        supports_tools=True,
        context_window=200_000,
        supports_max_mode=True,
        max_mode_context_window=1_000_000,
        is_alias=True,
        alias_of="claude-4.5-sonnet",
    )
    response = models_pb2.ListModelsResponse(models=[models_pb2.Model(id="a", owned_by="o", created=7), rich])
    bare = {
        "id": "a",
        "object": "model",
        "created": 7,
        "owned_by": "o",
        "display_name": "a",
        "context_window": None,
        "max_mode_context_window": None,
        "supports_thinking": False,
        "supports_images": False,
        "supports_tools": False,
        "supports_max_mode": False,
        "max_mode_only": False,
        "is_alias": False,
    }
    alias = {
        "id": "old-name",
        "object": "model",
        "created": 7,
        "owned_by": "anthropic",
        "display_name": "Claude 4.5 Sonnet",
        "context_window": 200000,
        "max_mode_context_window": 1000000,
        "supports_thinking": True,
        "supports_images": True,
        "supports_tools": True,
        "supports_max_mode": True,
        "max_mode_only": False,
        "is_alias": True,
        "alias_of": "claude-4.5-sonnet",
    }
    assert model_list(response) == {"object": "list", "data": [bare, alias]}


def test_completion_ids_are_unique() -> None:
    ids = {new_completion_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("chatcmpl-") for i in ids)


# --- errors ---------------------------------------------------------------------------------


def test_every_error_code_is_mapped() -> None:
    codes = {v for v in ErrorCode.values() if v != ErrorCode.ERROR_CODE_UNSPECIFIED}
    assert set(ERROR_TABLE) == codes


def details(info: errors_pb2.ErrorInfo) -> list[tuple[str, str | bytes]]:
    packed = any_pb2.Any()
    packed.Pack(info)
    status = status_pb2.Status(code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], details=[packed])
    return [("other", "x"), ("grpc-status-details-bin", status.SerializeToString())]


@pytest.mark.parametrize(("ms", "header"), [(1, "1"), (1000, "1"), (1001, "2"), (0, None)])
def test_retry_after_rounds_up(ms: int, header: str | None) -> None:
    info = errors_pb2.ErrorInfo(
        code=ErrorCode.ERROR_CODE_RATE_LIMITED, message="slow down", retry_after_ms=ms
    )
    parsed = error_info_from_metadata(details(info))
    assert parsed == info
    error = from_error_info(info)
    assert error.status == 429
    assert error.headers.get("Retry-After") == header
    if header:
        assert int(header) == math.ceil(ms / 1000)


def test_error_info_absent_or_garbled() -> None:
    assert error_info_from_metadata(None) is None
    assert error_info_from_metadata([("grpc-status-details-bin", b"\xff\xff garbage")]) is None
    assert (
        error_info_from_metadata([("grpc-status-details-bin", status_pb2.Status().SerializeToString())])
        is None
    )


def test_unknown_error_code_is_500_with_default_message() -> None:
    error = from_error_info(errors_pb2.ErrorInfo(code=999))  # type: ignore[arg-type]
    assert error.status == 500
    assert error.message


@pytest.mark.parametrize(
    ("loc", "param"),
    [
        (("body", "messages"), "messages"),
        (("body", "messages", 0, "content", "str"), "messages[0].content"),
        (
            (
                "body",
                "messages",
                2,
                "content",
                "list[tagged-union[TextPart,ImagePart]]",
                1,
                "image_url",
                "image_url",
                "url",
            ),
            "messages[2].content[1].image_url.url",
        ),
        (
            ("body", "messages", 0, "content", "list[tagged-union[TextPart,ImagePart]]", 0, "text", "text"),
            "messages[0].content[0].text",
        ),
        (("body", "tool_choice", "literal['auto','none','required']"), "tool_choice"),
        (("body", "tool_choice", "NamedToolChoice", "function", "name"), "tool_choice.function.name"),
        (("body", 12), None),
        (("body",), None),
    ],
)
def test_param_from_loc(loc: tuple[int | str, ...], param: str | None) -> None:
    assert param_from_loc(loc) == param


# --- metadata and settings -------------------------------------------------------------------


def test_call_metadata() -> None:
    assert call_metadata("Bearer k", "r") == (("authorization", "Bearer k"), ("x-request-id", "r"))
    assert call_metadata(None, "r") == (("x-request-id", "r"),)
    assert call_metadata("Bearer \u00e9", "r") == (("x-request-id", "r"),)
    assert request_id_from("abc", "fallback") == "abc"
    assert request_id_from("bad\nid", "fallback") == "fallback"
    assert request_id_from(None, "fallback") == "fallback"


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_HOST", "HTTP_PORT", "GRPC_PORT", "CORE_ADDRESS", "CORS_ORIGINS", "MAX_BODY_BYTES"):
        monkeypatch.delenv(f"CURSORGATE_{name}", raising=False)
    defaults = FacadeSettings()
    assert (defaults.http_host, defaults.http_port) == ("127.0.0.1", 8000)
    assert defaults.core_target == "127.0.0.1:50051"
    assert defaults.request_timeout == 600
    assert defaults.max_body_bytes == 32 * 1024 * 1024
    assert defaults.cors_origins == []

    monkeypatch.setenv("CURSORGATE_GRPC_PORT", "6000")
    assert FacadeSettings().core_target == "127.0.0.1:6000"
    monkeypatch.setenv("CURSORGATE_CORE_ADDRESS", "core.internal:7000")
    monkeypatch.setenv("CURSORGATE_CORS_ORIGINS", "https://a.test, https://b.test,")
    monkeypatch.setenv("CURSORGATE_LOG_LEVEL", "DEBUG")
    configured = FacadeSettings()
    assert configured.core_target == "core.internal:7000"
    assert configured.cors_origins == ["https://a.test", "https://b.test"]
    assert configured.log_level == "debug"


def test_responses_with_no_input_name_the_input_field() -> None:
    """Found by the fuzz suite once it checked statuses: `input: []` was refused naming
    `messages`, core's field, which the Responses API does not have."""
    body = CreateResponseRequest.model_validate({"model": "m", "input": []})
    with pytest.raises(OpenAIError) as caught:
        responses_request(body, input_items(body), "resp_1")
    assert (caught.value.status, caught.value.param) == (400, "input")
    assert caught.value.message == "'input' must contain at least one item."


# --- ChunkStream's per-token path, byte for byte (issue 16: only tested end to end before) ---


def chunk_bytes(delta: str, finish: str = "null", usage: str = "") -> bytes:
    """One chat.completion.chunk frame as OpenAI spells it, written out."""
    return (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",'
        b'"choices":[{"index":0,"delta":'
        + delta.encode()
        + b',"logprobs":null,"finish_reason":'
        + finish.encode()
        + b"}]"
        + usage.encode()
        + b"}\n\n"
    )


def test_chunk_stream_text_frames_are_exact() -> None:
    chunks = ChunkStream(completion_id="c1", model="m", include_usage=False, created=7)
    assert chunks.start(ev(text=chat_pb2.TextDelta(text="Hi"))) == chunk_bytes(
        '{"role":"assistant","content":""}'
    )
    assert chunks.text("Hi") == chunk_bytes('{"content":"Hi"}')
    assert chunks.text('say "x"\n') == chunk_bytes('{"content":"say \\"x\\"\\n"}')
    assert chunks.event(ev(text=chat_pb2.TextDelta(text="!"))) == chunk_bytes('{"content":"!"}')
    stop = ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP))
    assert chunks.event(stop) == chunk_bytes("{}", finish='"stop"')
    assert chunks.end() == b"data: [DONE]\n\n"


def test_chunk_stream_with_usage_marks_every_chunk() -> None:
    chunks = ChunkStream(completion_id="c1", model="m", include_usage=True, created=7)
    assert chunks.text("a") == chunk_bytes('{"content":"a"}', usage=',"usage":null')
    usage = ev(usage=chat_pb2.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3))
    assert chunks.event(usage) == b""  # held until the finish
    finish = chunks.event(ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_LENGTH)))
    assert finish.startswith(chunk_bytes("{}", finish='"length"', usage=',"usage":null'))
    assert b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3' in finish
    # A usage report after the finish goes out at once.
    assert b'"choices":[]' in chunks.event(usage)


def test_chunk_stream_first_chunk_before_a_tool_call_has_null_content() -> None:
    chunks = ChunkStream(completion_id="c1", model="m", include_usage=False, created=7)
    call = ev(tool_call=chat_pb2.ToolCallDelta(index=0, id="call_1", name="f", arguments=""))
    assert chunks.start(call) == chunk_bytes('{"role":"assistant","content":null}')
    assert chunks.event(call) == chunk_bytes(
        '{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}'
    )
    more = ev(tool_call=chat_pb2.ToolCallDelta(index=0, arguments='{"a":1}'))
    assert chunks.event(more) == chunk_bytes(
        '{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":1}"}}]}'
    )
    done = ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_TOOL_CALLS))
    assert chunks.event(done) == chunk_bytes("{}", finish='"tool_calls"')


def test_chunk_stream_reasoning_as_fields_or_inline_think() -> None:
    plain = ChunkStream(completion_id="c1", model="m", include_usage=False, created=7)
    thought = ev(reasoning=chat_pb2.ReasoningDelta(text="hm"))
    assert plain.event(thought) == chunk_bytes('{"reasoning_content":"hm","reasoning":"hm"}')
    inline = ChunkStream(completion_id="c1", model="m", include_usage=False, created=7, inline_think=True)
    assert inline.event(thought) == chunk_bytes('{"content":"<think>hm"}')
    assert inline.event(ev(reasoning=chat_pb2.ReasoningDelta(text="m"))) == chunk_bytes('{"content":"m"}')
    assert inline.text("ok") == chunk_bytes('{"content":"</think>\\n\\nok"}')
    assert inline.text("!") == chunk_bytes('{"content":"!"}')
    # A think still open when a tool call or the finish comes is closed first.
    inline.event(thought)
    stop = ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP))
    assert inline.event(stop) == chunk_bytes('{"content":"</think>\\n\\n"}') + chunk_bytes(
        "{}", finish='"stop"'
    )


def test_chunk_stream_legacy_function_call() -> None:
    chunks = ChunkStream(completion_id="c1", model="m", include_usage=False, created=7, legacy_functions=True)
    first = ev(tool_call=chat_pb2.ToolCallDelta(index=0, id="call_1", name="f", arguments=""))
    assert chunks.event(first) == chunk_bytes('{"function_call":{"name":"f","arguments":""}}')
    args = ev(tool_call=chat_pb2.ToolCallDelta(index=0, arguments="{}"))
    assert chunks.event(args) == chunk_bytes('{"function_call":{"arguments":"{}"}}')
    assert chunks.event(ev(tool_call=chat_pb2.ToolCallDelta(index=1, name="g"))) == b""
    done = ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_TOOL_CALLS))
    assert chunks.event(done) == chunk_bytes("{}", finish='"function_call"')


def test_legacy_function_messages_travel_as_text() -> None:
    """The deprecated `functions` API: calls and results carry no id, so they become text."""
    out = to_chat_request(
        request(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "function_call": {"name": "get", "arguments": "{}"},
                },
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "get", "arguments": '{"d":1}'},
                },
                {"role": "function", "name": "get", "content": "sunny"},
                {
                    "role": "function",
                    "name": "get",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ]
        ),
        "id",
    )
    said = [(chat_pb2.Role.Name(m.role), [p.text for p in m.content]) for m in out.messages]
    assert said == [
        ("ROLE_USER", ["weather?"]),
        ("ROLE_ASSISTANT", ["Checking.\n\nCalled function get with arguments {}"]),
        ("ROLE_ASSISTANT", ['Called function get with arguments {"d":1}']),
        ("ROLE_USER", ["Result of function get:\nsunny"]),
        ("ROLE_USER", ["Result of function get:\na\nb"]),
    ]
    assert all(not m.tool_calls and not m.tool_call_id for m in out.messages)


# --- request and answer edge cases, written out (issue 16: mutation testing of this module) ---


def test_user_and_affinity_key() -> None:
    plain = to_chat_request(request(), "id")
    assert (plain.model, plain.user, plain.affinity_key) == ("m", "", "")
    user = to_chat_request(request(user="u1"), "id")
    assert (user.user, user.affinity_key) == ("u1", "u1")
    keyed = to_chat_request(request(user="u1", prompt_cache_key="k"), "id")
    assert (keyed.user, keyed.affinity_key) == ("u1", "k")
    only_key = to_chat_request(request(prompt_cache_key="k"), "id")
    assert (only_key.user, only_key.affinity_key) == ("", "k")


def test_file_parts() -> None:
    body = request(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,QQ==", "filename": "a.pdf"},
                    },
                    {"type": "file", "file": {"file_data": "QQ=="}},
                ],
            }
        ]
    )
    content = to_chat_request(body, "id").messages[0].content
    assert content[0].file == chat_pb2.FilePart(url="data:application/pdf;base64,QQ==", filename="a.pdf")
    assert content[1].file == chat_pb2.FilePart(url="data:;base64,QQ==", filename="")
    with pytest.raises(OpenAIError) as caught:
        to_chat_request(
            request(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x"},
                            {"type": "file", "file": {"file_id": "f"}},
                        ],
                    }
                ]
            ),
            "id",
        )
    assert caught.value.param == "messages[0].content[1].file.file_id"


def test_tool_without_parameters_and_strict() -> None:
    out = to_chat_request(
        request(
            tools=[{"type": "function", "function": {"name": "g", "strict": True}}], parallel_tool_calls=False
        ),
        "id",
    )
    assert out.tools[0] == chat_pb2.Tool(name="g", description="", strict=True)
    assert not out.tools[0].HasField("parameters")
    assert out.HasField("parallel_tool_calls")
    assert out.parallel_tool_calls is False
    for mode, expected in [("auto", chat_pb2.ToolChoice.MODE_AUTO), ("none", chat_pb2.ToolChoice.MODE_NONE)]:
        assert to_chat_request(request(tool_choice=mode), "id").tool_choice.mode == expected


def test_legacy_functions_request() -> None:
    functions = [{"name": "get", "description": "d", "parameters": {"type": "object"}}]
    out = to_chat_request(request(functions=functions, function_call={"name": "get"}), "id")
    assert out.tools[0].name == "get"
    assert out.tools[0].description == "d"
    assert json_format.MessageToDict(out.tools[0].parameters) == {"type": "object"}
    assert out.tool_choice == chat_pb2.ToolChoice(mode=chat_pb2.ToolChoice.MODE_FUNCTION, function_name="get")
    assert out.HasField("parallel_tool_calls")
    assert out.parallel_tool_calls is False
    auto = to_chat_request(request(functions=functions, function_call="none", parallel_tool_calls=True), "id")
    assert auto.tool_choice.mode == chat_pb2.ToolChoice.MODE_NONE
    assert auto.parallel_tool_calls is False
    unset = to_chat_request(request(functions=functions), "id")
    assert not unset.HasField("tool_choice")
    # `tools` wins over `functions`: then function_call is ignored
    both = to_chat_request(
        request(
            tools=[{"type": "function", "function": {"name": "t"}}],
            functions=functions,
            function_call={"name": "get"},
        ),
        "id",
    )
    assert [t.name for t in both.tools] == ["t"]
    assert not both.HasField("tool_choice")
    assert not both.HasField("parallel_tool_calls")


def test_max_mode_and_response_format() -> None:
    assert to_chat_request(request(max_mode=True), "id").max_mode is True
    off = to_chat_request(request(max_mode=False), "id")
    assert off.HasField("max_mode") and off.max_mode is False
    assert not to_chat_request(request(), "id").HasField("max_mode")
    assert not to_chat_request(request(), "id").HasField("response_format")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = to_chat_request(
        request(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "A", "description": "desc", "schema": schema, "strict": True},
            }
        ),
        "id",
    )
    fmt = out.response_format
    assert (fmt.type, fmt.name, fmt.description, fmt.strict) == (
        chat_pb2.ResponseFormat.TYPE_JSON_SCHEMA,
        "A",
        "desc",
        True,
    )
    assert json_format.MessageToDict(fmt.schema) == schema
    obj = to_chat_request(request(response_format={"type": "json_object"}), "id").response_format
    assert obj == chat_pb2.ResponseFormat(type=chat_pb2.ResponseFormat.TYPE_JSON_OBJECT)


def test_temperature_and_frequency_penalty() -> None:
    sampling = to_chat_request(request(temperature=0.25, frequency_penalty=-0.5), "id").sampling
    assert sampling.temperature == 0.25
    assert sampling.frequency_penalty == -0.5
    assert not sampling.HasField("top_p")
    assert not sampling.HasField("presence_penalty")
    assert not sampling.HasField("seed")
    assert not sampling.HasField("max_tokens")
    assert list(sampling.stop) == []
    zero = to_chat_request(request(max_completion_tokens=1, max_tokens=7, seed=0), "id").sampling
    assert zero.max_tokens == 1
    assert zero.HasField("seed") and zero.seed == 0
    assert to_chat_request(request(stop=[]), "id").sampling.stop == []


def test_message_content_as_parts_list_of_text() -> None:
    out = to_chat_request(
        request(messages=[{"role": "assistant", "content": [{"type": "text", "text": "a"}], "name": "bot"}]),
        "id",
    )
    assert out.messages[0] == chat_pb2.Message(
        role=chat_pb2.ROLE_ASSISTANT, name="bot", content=[chat_pb2.ContentPart(text="a")]
    )
    empty = to_chat_request(request(messages=[{"role": "user", "content": ""}]), "id")
    assert empty.messages[0] == chat_pb2.Message(
        role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text="")]
    )


def test_legacy_function_result_without_name() -> None:
    out = to_chat_request(
        request(
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "p"}, {"type": "text", "text": "q"}],
                    "function_call": {"name": "f", "arguments": "1"},
                },
            ]
        ),
        "id",
    )
    assert out.messages[1].content[0].text == "p\nq\n\nCalled function f with arguments 1"


# Core's finish reasons and the OpenAI string each must become, written out.
FINISHES = [
    (chat_pb2.FINISH_REASON_UNSPECIFIED, "stop"),
    (chat_pb2.FINISH_REASON_STOP, "stop"),
    (chat_pb2.FINISH_REASON_LENGTH, "length"),
    (chat_pb2.FINISH_REASON_TOOL_CALLS, "tool_calls"),
    (chat_pb2.FINISH_REASON_CONTENT_FILTER, "content_filter"),
    (99, "stop"),
]


@pytest.mark.parametrize(("reason", "expected"), FINISHES)
def test_finish_reasons(reason: int, expected: str) -> None:
    response = chat_pb2.ChatResponse(content="x", finish_reason=reason)  # type: ignore[arg-type]
    assert (
        to_completion(response, completion_id="c", created=0, model="m")["choices"][0]["finish_reason"]
        == expected
    )
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False)
    out = chunks.translate(ev(finish=chat_pb2.Finish(reason=reason)))  # type: ignore[arg-type]
    assert out[0]["choices"][0]["finish_reason"] == expected


def test_completion_whole_object() -> None:
    response = chat_pb2.ChatResponse(
        model="real-model",
        content="hi",
        finish_reason=chat_pb2.FINISH_REASON_LENGTH,
        usage=chat_pb2.Usage(prompt_tokens=2, completion_tokens=3, total_tokens=9, cache_read_tokens=4),
    )
    assert to_completion(response, completion_id="chatcmpl-1", created=77, model="asked") == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 77,
        "model": "real-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": 2,
            "completion_tokens": 3,
            "total_tokens": 9,
            "completion_tokens_details": {"reasoning_tokens": 0},
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    empty = to_completion(chat_pb2.ChatResponse(), completion_id="c", created=0, model="asked")
    assert empty["model"] == "asked"
    assert empty["choices"][0]["message"] == {"role": "assistant", "content": "", "refusal": None}
    assert "usage" not in empty
    zero = to_completion(
        chat_pb2.ChatResponse(usage=chat_pb2.Usage()), completion_id="c", created=0, model="m"
    )
    assert zero["usage"]["total_tokens"] == 0


def test_completion_text_and_tool_calls_and_inline_without_reasoning() -> None:
    response = chat_pb2.ChatResponse(
        content="Let me look.",
        tool_calls=[
            chat_pb2.ToolCall(id="call_1", name="f", arguments="{}"),
            chat_pb2.ToolCall(id="call_2", name="g", arguments="[]"),
        ],
        finish_reason=chat_pb2.FINISH_REASON_TOOL_CALLS,
    )
    message = to_completion(response, completion_id="c", created=0, model="m", inline_think=True)["choices"][
        0
    ]["message"]
    assert message == {
        "role": "assistant",
        "content": "Let me look.",
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "[]"}},
        ],
    }


def test_completion_legacy_function_call() -> None:
    response = chat_pb2.ChatResponse(
        tool_calls=[
            chat_pb2.ToolCall(id="call_1", name="f", arguments='{"a":1}'),
            chat_pb2.ToolCall(id="call_2", name="g", arguments="{}"),
        ],
        finish_reason=chat_pb2.FINISH_REASON_TOOL_CALLS,
    )
    out = to_completion(response, completion_id="c", created=0, model="m", legacy_functions=True)
    assert out["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "function_call": {"name": "f", "arguments": '{"a":1}'},
        },
        "logprobs": None,
        "finish_reason": "function_call",
    }
    cut = chat_pb2.ChatResponse(
        tool_calls=[chat_pb2.ToolCall(id="call_1", name="f", arguments="{")],
        finish_reason=chat_pb2.FINISH_REASON_LENGTH,
    )
    assert (
        to_completion(cut, completion_id="c", created=0, model="m", legacy_functions=True)["choices"][0][
            "finish_reason"
        ]
        == "length"
    )
    plain = to_completion(
        chat_pb2.ChatResponse(content="x"), completion_id="c", created=0, model="m", legacy_functions=True
    )
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": "x", "refusal": None}
    assert plain["choices"][0]["finish_reason"] == "stop"


def test_chunk_stream_defaults_and_first_without_event() -> None:
    import time

    before = int(time.time())
    chunks = ChunkStream(completion_id="c", model="m", include_usage=False)
    assert before <= chunks.created <= int(time.time())
    assert chunks.finished is False
    assert chunks.first() == {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": chunks.created,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    zero = ChunkStream(completion_id="c", model="m", include_usage=False, created=0)
    assert zero.created == 0


def test_chunk_stream_content_frame_is_reused() -> None:
    chunks = ChunkStream(completion_id="c1", model="m", include_usage=False, created=7)
    assert chunks.content_frame("a") == chunk_bytes('{"content":"a"}')
    assert chunks.content_frame('"content":""') == chunk_bytes('{"content":"\\"content\\":\\"\\""}')
    assert chunks.content_frame("b") == chunk_bytes('{"content":"b"}')


def test_chunk_stream_usage_after_finish_and_tool_call_without_id() -> None:
    chunks = ChunkStream(completion_id="c1", model="m", include_usage=True, created=7)
    finish = chunks.event(ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP)))
    assert finish == chunk_bytes("{}", finish='"stop"', usage=',"usage":null')  # no usage held yet
    assert chunks.finished is True
    usage = ev(usage=chat_pb2.Usage(prompt_tokens=1, completion_tokens=1))
    assert chunks.event(usage) == (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,'
        b'"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens_details":{"cached_tokens":0}}}\n\n'
    )
    quiet = ChunkStream(completion_id="c1", model="m", include_usage=False, created=7)
    quiet.event(ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP)))
    assert quiet.event(usage) == b""
    named = ChunkStream(completion_id="c1", model="m", include_usage=False, created=7)
    call = ev(tool_call=chat_pb2.ToolCallDelta(index=2, name="f", arguments="{"))
    assert named.event(call) == chunk_bytes(
        '{"tool_calls":[{"index":2,"function":{"name":"f","arguments":"{"}}]}'
    )


def test_chunk_stream_inline_think_tool_call_legacy_and_error() -> None:
    chunks = ChunkStream(
        completion_id="c1",
        model="m",
        include_usage=False,
        created=7,
        inline_think=True,
        legacy_functions=True,
    )
    chunks.event(ev(reasoning=chat_pb2.ReasoningDelta(text="r")))
    call = ev(tool_call=chat_pb2.ToolCallDelta(index=0, id="x", name="f", arguments="{}"))
    assert chunks.event(call) == chunk_bytes('{"content":"</think>\\n\\n"}') + chunk_bytes(
        '{"function_call":{"name":"f","arguments":"{}"}}'
    )
    # closed once: the next text has no close tag
    assert chunks.text("t") == chunk_bytes('{"content":"t"}')
    assert chunks.event(ev(text=chat_pb2.TextDelta(text="u"))) == chunk_bytes('{"content":"u"}')
    error = OpenAIError(504, "late", "server_error", code="timeout")
    assert chunks.error(error) == (
        b'data: {"error":{"message":"late","type":"server_error","param":null,"code":"timeout"}}\n\n'
        b"data: [DONE]\n\n"
    )
    # finish without an open think has no close chunk
    stop = ev(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP))
    assert chunks.event(stop) == chunk_bytes("{}", finish='"stop"')


def test_completion_id_shape() -> None:
    completion_id = new_completion_id()
    assert completion_id.startswith("chatcmpl-")
    assert len(completion_id) == len("chatcmpl-") + 24  # 12 random bytes in hex
    int(completion_id.removeprefix("chatcmpl-"), 16)


def test_model_owner_defaults_to_cursor() -> None:
    listed = model_list(models_pb2.ListModelsResponse(models=[models_pb2.Model(id="a")]))
    assert listed["data"][0]["owned_by"] == "cursor"


def test_json_object_format_ignores_a_stray_schema() -> None:
    out = to_chat_request(
        request(
            response_format={
                "type": "json_object",
                "json_schema": {"name": "A", "schema": {"type": "object"}},
            }
        ),
        "id",
    )
    assert out.response_format == chat_pb2.ResponseFormat(type=chat_pb2.ResponseFormat.TYPE_JSON_OBJECT)


def test_legacy_function_result_without_name_or_content() -> None:
    out = to_chat_request(
        request(messages=[{"role": "user", "content": "x"}, {"role": "function", "content": None}]), "id"
    )
    assert out.messages[1] == chat_pb2.Message(
        role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text="Result of function :\n")]
    )
