"""Unit tests of the Cursor-side seams: headers, tokens, error classification, event mapping."""

from __future__ import annotations

import pytest
from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError
from protobuf.wkt import Any as ConnectAny

from aiserver.v1 import chat_pb2 as cursor
from aiserver.v1 import tools_pb2
from core.upstream.errors import Failure, UpstreamError, classify
from core.upstream.headers import (
    ClientIdentity,
    checksum,
    checksum_prefix,
    checksum_prefix_ide3,
    cli_headers,
    cursor_headers,
    ide_headers,
    session_id,
)
from core.upstream.legacy.events import EventMapper
from core.upstream.tokens import InvalidToken, normalize_token
from cursorgate.v1 import chat_pb2, errors_pb2
from simulator.errors import cursor_error

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyXzAxIn0.c2ln"


# Vectors derived from the description in docs/cursor-protocol.md with a fixed clock:
# k = 1735689600 // 1000 = 1735689 = 0x1A7C09 -> raw bytes 7c 09 00 1a 7c 09
# -> obfuscated d9 d1 d3 cc b4 c2 -> base64url "2dHTzLTC". The second vector differs between
# the standard and URL-safe alphabets ("T/Dy..." vs "T_Dy..."), pinning the newer source's choice.
@pytest.mark.parametrize(
    ("now", "prefix"),
    [(1735689600, "2dHTzLTC"), (1764000000, "T_Dy6wWq")],
)
def test_checksum_prefix_vectors(now: float, prefix: str) -> None:
    assert checksum_prefix(now) == prefix


def test_checksum_prefix_changes_every_1000_seconds() -> None:
    assert checksum_prefix(1735689600) == checksum_prefix(1735689999)
    assert checksum_prefix(1735689600) != checksum_prefix(1735690600)


def test_full_checksum_vector() -> None:
    assert checksum("test-token", 1735689600) == (
        "2dHTzLTC"
        "a5bc8e5ea0589be62b4b1601e041ec15611d026fcb6abf44b9a67ea8c72dedcc/"
        "1538f40d643aa1019e96206111936ae78aace6b5fa57de94420001fcf4ea32a8"
    )


def test_headers_are_complete_and_stable_per_token() -> None:
    headers = cursor_headers(JWT, ClientIdentity(client_version="2.3.41", timezone="Europe/Paris"))
    assert headers["authorization"] == f"Bearer {JWT}"
    assert headers["x-cursor-client-version"] == "2.3.41"
    assert headers["x-cursor-timezone"] == "Europe/Paris"
    assert headers["x-ghost-mode"] == "true"
    assert headers["x-session-id"] == session_id(JWT)
    for name in (
        "x-cursor-checksum",
        "x-request-id",
        "x-amzn-trace-id",
        "x-client-key",
    ):
        assert headers[name]
    # Not made up: only sent once GetServerConfig told the gateway a config version.
    assert "x-cursor-config-version" not in headers
    configured = cursor_headers(JWT, ClientIdentity(client_version="2.3.41", config_version="cv-7"))
    assert configured["x-cursor-config-version"] == "cv-7"
    again = cursor_headers(JWT, ClientIdentity(client_version="2.3.41"))
    assert again["x-session-id"] == headers["x-session-id"]
    assert again["x-request-id"] != headers["x-request-id"]


@pytest.mark.parametrize(
    "value",
    [
        JWT,
        f"Bearer {JWT}",
        f"user_01ABC%3A%3A{JWT}",
        f"user_01ABC::{JWT}",
        f"WorkosCursorSessionToken=user_1%3A%3A{JWT}",
    ],
)
def test_normalize_token(value: str) -> None:
    assert normalize_token(value) == JWT


@pytest.mark.parametrize("value", ["", "not-a-token", "a.b", "user_1::nope"])
def test_normalize_token_rejects(value: str) -> None:
    with pytest.raises(InvalidToken):
        normalize_token(value)


@pytest.mark.parametrize(
    ("kind", "failure", "retryable"),
    [
        ("auth", Failure.AUTH, True),
        ("expired", Failure.AUTH, True),
        ("rate_limited", Failure.RATE_LIMITED, True),
        ("usage_limit", Failure.USAGE_LIMIT, True),
        ("outdated", Failure.OUTDATED_CLIENT, False),
        ("deprecated", Failure.OUTDATED_CLIENT, False),
        ("bad_model", Failure.BAD_MODEL, False),
        ("unavailable", Failure.UNAVAILABLE, True),
    ],
)
def test_classify_cursor_errors(kind: str, failure: Failure, retryable: bool) -> None:
    err = classify(cursor_error(kind, retry_after=12))
    assert err.failure is failure
    assert err.retryable is retryable
    if failure is Failure.RATE_LIMITED:
        assert err.retry_after_ms == 12_000


# The gateway code each failure must become, written out (not read from the classifier's table).
@pytest.mark.parametrize(
    ("kind", "failure", "code", "retryable"),
    [
        # Enum 28 reads as a rate limit, but its words say the client is outdated (issue 9).
        ("update_required", Failure.OUTDATED_CLIENT, "ERROR_CODE_UPSTREAM_OUTDATED_CLIENT", False),
        ("region", Failure.REGION_BLOCKED, "ERROR_CODE_MODEL_NOT_ALLOWED", True),
        ("model_blocked", Failure.MODEL_BLOCKED, "ERROR_CODE_MODEL_NOT_ALLOWED", True),
        ("max_mode", Failure.MAX_MODE_REQUIRED, "ERROR_CODE_MAX_MODE_REQUIRED", False),
        ("account_closed", Failure.ACCOUNT_BLOCKED, "ERROR_CODE_UPSTREAM_AUTH", True),
        ("provider", Failure.UNAVAILABLE, "ERROR_CODE_UPSTREAM_UNAVAILABLE", True),
    ],
)
def test_classify_2026_errors(kind: str, failure: Failure, code: str, retryable: bool) -> None:
    err = classify(cursor_error(kind))
    assert err.failure is failure
    assert errors_pb2.ErrorCode.Name(err.code) == code
    assert err.retryable is retryable


def test_max_mode_error_tells_the_caller_what_to_do() -> None:
    err = classify(cursor_error("max_mode"))
    assert "-max" in err.message and "max_mode" in err.message and err.param == "model"


def test_outdated_words_outrank_a_rate_limit_enum_without_details() -> None:
    plain = ConnectError(ConnectCode.RESOURCE_EXHAUSTED, "Update Required")
    assert classify(plain).failure is Failure.OUTDATED_CLIENT
    region = ConnectError(
        ConnectCode.RESOURCE_EXHAUSTED, "This model provider is not supported in your region."
    )
    assert classify(region).failure is Failure.REGION_BLOCKED


def test_ide3_checksum_prefix_vectors() -> None:
    # Worked by hand from agent-protocol.md §2.5: t = ms // 1e6 = 1735689 = 0x1A7C09 as 48-bit
    # big-endian 00 00 00 1a 7c 09 -> XOR chain from 165 -> a5 a6 a8 b5 cd c9 -> standard base64.
    assert checksum_prefix_ide3(1735689600) == "paaotc3J"
    assert checksum_prefix_ide3(1764000000) == "paaotWPI"


def test_ide_and_cli_profiles() -> None:
    identity = ClientIdentity(client_version="3.18.9", commit="abc123", os="linux", arch="x64")
    ide = ide_headers(JWT, identity)
    assert ide["x-cursor-client-type"] == "ide" and ide["x-cursor-client-version"] == "3.18.9"
    assert ide["x-cursor-client-commit"] == "abc123" and ide["x-cursor-client-device-type"] == "desktop"
    assert ide["cookie"] == f"CursorCookie=Cookie-{JWT[:15]}"
    assert ide["x-cursor-checksum"].startswith(checksum_prefix_ide3(__import__("time").time()))
    cli = cli_headers(JWT, ClientIdentity(client_version="cli-2026.09.02-c22c1a3"))
    assert cli["x-cursor-client-type"] == "cli" and cli["x-cursor-client-version"] == "cli-2026.09.02-c22c1a3"
    # The agent host gets no IDE machine identity (agent-protocol.md §2.5).
    assert not {"x-cursor-checksum", "x-cursor-client-os", "cookie"} & set(cli)
    assert cli["x-request-id"] == cli["x-original-request-id"]


def test_classify_transport_errors_without_details() -> None:
    assert (
        classify(ConnectError(ConnectCode.UNAVAILABLE, "connection refused")).failure is Failure.UNAVAILABLE
    )
    assert classify(ConnectError(ConnectCode.INTERNAL, "bad frame")).failure is Failure.PROTOCOL
    foreign = ConnectAny(type_url="type.googleapis.com/other.Detail", value=b"\x08\x01")
    assert classify(ConnectError(ConnectCode.UNKNOWN, "x", details=[foreign])).failure is Failure.OTHER
    garbled = ConnectAny(type_url="type.googleapis.com/aiserver.v1.ErrorDetails", value=b"\xff\xff")
    assert classify(ConnectError(ConnectCode.RESOURCE_EXHAUSTED, "x", details=[garbled])).failure is (
        Failure.RATE_LIMITED
    )


def _call(
    call_id: str, raw: str, *, streaming: bool, last: bool, name: str = "f"
) -> cursor.StreamUnifiedChatResponseWithTools:
    tool = tools_pb2.MCPParams.Tool(name=name, server_name="custom")
    return cursor.StreamUnifiedChatResponseWithTools(
        client_side_tool_v2_call=tools_pb2.ClientSideToolV2Call(
            tool=tools_pb2.CLIENT_SIDE_TOOL_V2_MCP,
            tool_call_id=call_id,
            name=name,
            raw_args=raw,
            is_streaming=streaming,
            is_last_message=last,
            mcp_params=tools_pb2.MCPParams(tools=[tool]),
            model_call_id="mc1",
        )
    )


def test_event_mapper_passes_each_calls_arguments_once_when_complete() -> None:
    mapper = EventMapper()
    events = []
    for raw, last in (('{"a":', False), ('{"a": 1', False), ('{"a": 1}', True)):
        events += mapper.feed(_call("t1", raw, streaming=True, last=last))
    events += mapper.feed(_call("t2", '{"b": 2}', streaming=False, last=True, name="g"))
    deltas = [e.tool_call for e in events]
    assert [(d.index, d.id, d.name, d.arguments) for d in deltas] == [
        (0, "t1__mc_mc1", "f", ""),
        (0, "", "", '{"a": 1}'),
        (1, "t2__mc_mc1", "g", ""),
        (1, "", "", '{"b": 2}'),
    ]
    assert mapper.finish_calls() == []


def test_event_mapper_survives_cursor_restarting_the_arguments() -> None:
    """Cursor sends a compact copy, then restarts with the growing spaced JSON (issue 9): the
    old mapper passed on '{"city":"Paris"}, "unit": "celsius"}'."""
    mapper = EventMapper()
    frames = [
        ('{"city":"Paris","unit":"celsius"}', False),
        ('{"city": "Paris"', False),
        ('{"city": "Paris", "unit": "celsius"}', True),
    ]
    events = [e for raw, last in frames for e in mapper.feed(_call("t1", raw, streaming=True, last=last))]
    joined = "".join(e.tool_call.arguments for e in events)
    assert joined == '{"city": "Paris", "unit": "celsius"}'


def test_event_mapper_keeps_the_last_valid_copy_when_the_stream_ends_mid_restart() -> None:
    mapper = EventMapper()
    mapper.feed(_call("t1", '{"city":"Paris"}', streaming=True, last=False))
    mapper.feed(_call("t1", '{"city": "Pa', streaming=True, last=False))
    (closing,) = mapper.finish_calls()
    assert closing.tool_call.arguments == '{"city":"Paris"}'


def test_event_mapper_refuses_arguments_that_never_were_json() -> None:
    mapper = EventMapper()
    mapper.feed(_call("t1", '{"city": "Pa', streaming=True, last=False))
    with pytest.raises(UpstreamError) as info:
        mapper.finish_calls()
    assert info.value.failure is Failure.PROTOCOL


def test_event_mapper_single_call_when_parallel_off_and_empty_args_become_object() -> None:
    mapper = EventMapper(max_calls=1)
    first = mapper.feed(_call("t1", "", streaming=False, last=True))
    assert mapper.feed(_call("t2", "{}", streaming=False, last=True)) == []
    assert first[0].tool_call.id and first[1].tool_call.arguments == "{}"
    assert mapper.finish_calls() == []


def test_event_mapper_text_and_thinking() -> None:
    frame = cursor.StreamUnifiedChatResponseWithTools(
        stream_unified_chat_response=cursor.StreamUnifiedChatResponse(
            text="hi", thinking=cursor.ConversationMessage.Thinking(text="hmm")
        )
    )
    kinds = [e.WhichOneof("event") for e in EventMapper().feed(frame)]
    assert kinds == ["reasoning", "text"]


def _named_call(call_name: str, tools: list[tuple[str, str]]) -> cursor.StreamUnifiedChatResponseWithTools:
    return cursor.StreamUnifiedChatResponseWithTools(
        client_side_tool_v2_call=tools_pb2.ClientSideToolV2Call(
            tool=tools_pb2.CLIENT_SIDE_TOOL_V2_MCP,
            tool_call_id="t1",
            name=call_name,
            raw_args="{}",
            is_streaming=False,
            mcp_params=tools_pb2.MCPParams(
                tools=[tools_pb2.MCPParams.Tool(name=n, server_name=s) for n, s in tools]
            ),
        )
    )


@pytest.mark.parametrize(
    ("call_name", "tools", "expected"),
    [
        # The MCP tool entry is the caller's declared name; the call's own name is Cursor's label.
        ("mcp_custom_get_weather", [("get_weather", "custom")], "get_weather"),
        ("label", [("get_weather", "")], "get_weather"),
        ("label", [("first", "custom"), ("second", "custom")], "first"),
        # A tool of another MCP server keeps its server in the name.
        ("label", [("search", "github")], "mcp__github__search"),
        # No MCP entry: the call's own name is all there is.
        ("get_weather", [], "get_weather"),
    ],
)
def test_event_mapper_tool_name_sources(call_name: str, tools: list[tuple[str, str]], expected: str) -> None:
    first, _ = EventMapper().feed(_named_call(call_name, tools))
    assert first.tool_call.name == expected


def _unified(text: str = "", thinking: str | None = None) -> cursor.StreamUnifiedChatResponseWithTools:
    response = cursor.StreamUnifiedChatResponse(text=text)
    if thinking is not None:
        response.thinking.text = thinking
    return cursor.StreamUnifiedChatResponseWithTools(stream_unified_chat_response=response)


def test_event_mapper_golden_text_frames() -> None:
    """The hot path: a plain text frame is one text event with the frame's text."""
    mapper = EventMapper()
    assert mapper.feed(_unified("Hello")) == [chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text="Hello"))]
    assert mapper.feed(_unified("")) == []
    assert mapper.feed(_unified("hi", thinking="hmm")) == [
        chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text="hmm")),
        chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text="hi")),
    ]
    assert mapper.feed(_unified("only text", thinking="")) == [
        chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text="only text"))
    ]
    assert mapper.feed(_unified("", thinking="only thought")) == [
        chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text="only thought"))
    ]
    assert mapper.feed(cursor.StreamUnifiedChatResponseWithTools()) == []


def test_event_mapper_finish_closes_every_open_call() -> None:
    mapper = EventMapper()
    mapper.feed(_call("t1", '{"a": 1}', streaming=True, last=False))
    mapper.feed(_call("t2", "", streaming=True, last=False, name="g"))
    closing = mapper.finish_calls()
    assert [(e.tool_call.index, e.tool_call.arguments) for e in closing] == [(0, '{"a": 1}'), (1, "{}")]
    assert mapper.finish_calls() == []
