"""In-process unit tests of the Anthropic Messages <-> cursorgate.v1 seam (anthropic_messages/convert.py).

Expected protos are written out as dicts (proto JSON) and stream frames as literal SSE events;
nothing is computed from the converter's own tables.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from google.protobuf import json_format

from cursorgate.v1 import chat_pb2
from facade.anthropic_messages.convert import (
    MessageStream,
    new_message_id,
    signature,
    stop_reason,
    to_chat_request,
    to_message,
)
from facade.anthropic_messages.schemas import CountTokensRequest, MessagesRequest
from facade.errors import OpenAIError

# sha256 hex digests' first 32 digits, worked out by hand with hashlib, prefixed "cg1".
SIG_HMM = "cg10a034dc9c0d0d4fa4c0dbcf6faf7f39a"
SIG_AB = "cg1fb8e20fc2e4c3f248c60c39bd652f3c1"


def messages_request(**fields: Any) -> MessagesRequest:
    body: dict[str, Any] = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    return MessagesRequest.model_validate(body | fields)


def count_request(**fields: Any) -> CountTokensRequest:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return CountTokensRequest.model_validate(body | fields)


def expected(value: dict[str, Any]) -> chat_pb2.ChatRequest:
    return json_format.ParseDict(value, chat_pb2.ChatRequest())


def convert(**fields: Any) -> chat_pb2.ChatRequest:
    return to_chat_request(messages_request(**fields), "req-1")


def messages_of(**fields: Any) -> list[dict[str, Any]]:
    request = to_chat_request(count_request(**fields), "r")
    return [json_format.MessageToDict(m) for m in request.messages]


def refusal(fields: dict[str, Any]) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        to_chat_request(messages_request(**fields), "r")
    return caught.value


# --- request conversion ---------------------------------------------------------------------


def test_minimal_request() -> None:
    assert convert() == expected(
        {
            "model": "m",
            "requestId": "req-1",
            "messages": [{"role": "ROLE_USER", "content": [{"text": "hi"}]}],
            "sampling": {"maxTokens": 100},
        }
    )


def test_full_request_with_system_tools_sampling_and_metadata() -> None:
    got = convert(
        system="be brief",
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "t1"}, {"type": "text", "text": "t2"}]},
        ],
        tools=[
            {"name": "get", "description": "gets", "input_schema": {"type": "object", "properties": {}}},
            {"name": "bare", "input_schema": {"type": "object"}},
            {"name": "web_search", "type": "web_search_20250305"},
        ],
        tool_choice={"type": "tool", "name": "get", "disable_parallel_tool_use": True},
        temperature=0.5,
        top_p=0.25,
        top_k=5,
        stop_sequences=["END", "STOP"],
        metadata={"user_id": "u-7"},
    )
    assert got == expected(
        {
            "model": "m",
            "requestId": "req-1",
            "messages": [
                {"role": "ROLE_SYSTEM", "content": [{"text": "be brief"}]},
                {"role": "ROLE_USER", "content": [{"text": "q"}]},
                {"role": "ROLE_ASSISTANT", "content": [{"text": "a"}]},
                {"role": "ROLE_USER", "content": [{"text": "t1"}, {"text": "t2"}]},
            ],
            "tools": [
                {"name": "get", "description": "gets", "parameters": {"type": "object", "properties": {}}},
                {"name": "bare", "parameters": {"type": "object"}},
            ],
            "toolChoice": {"mode": "MODE_FUNCTION", "functionName": "get"},
            "parallelToolCalls": False,
            "sampling": {"maxTokens": 100, "temperature": 0.5, "topP": 0.25, "stop": ["END", "STOP"]},
            "user": "u-7",
            "affinityKey": "u-7",
        }
    )


def test_system_as_text_blocks_and_empty_system() -> None:
    got = convert(system=[{"type": "text", "text": "one"}, {"type": "text", "text": "two"}])
    assert json_format.MessageToDict(got.messages[0]) == {
        "role": "ROLE_SYSTEM",
        "content": [{"text": "one"}, {"text": "two"}],
    }
    assert [m.role for m in convert(system="").messages] == [chat_pb2.ROLE_USER]
    assert [m.role for m in convert(system=[]).messages] == [chat_pb2.ROLE_USER]


@pytest.mark.parametrize(
    ("choice", "mode", "parallel"),
    [
        ({"type": "auto"}, "MODE_AUTO", None),
        ({"type": "any"}, "MODE_REQUIRED", None),
        ({"type": "none"}, "MODE_NONE", None),
        ({"type": "auto", "disable_parallel_tool_use": False}, "MODE_AUTO", True),
        ({"type": "any", "disable_parallel_tool_use": True}, "MODE_REQUIRED", False),
    ],
)
def test_tool_choice_modes(choice: dict[str, Any], mode: str, parallel: bool | None) -> None:
    got = convert(tool_choice=choice)
    want: dict[str, Any] = {
        "model": "m",
        "requestId": "req-1",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "hi"}]}],
        "sampling": {"maxTokens": 100},
        "toolChoice": {"mode": mode},
    }
    if parallel is not None:
        want["parallelToolCalls"] = parallel
    assert got == expected(want)
    assert got.HasField("parallel_tool_calls") is (parallel is not None)


def test_metadata_without_user_id_and_no_tool_choice() -> None:
    got = convert(metadata={})
    assert got.user == "" and got.affinity_key == ""
    assert not got.HasField("tool_choice")
    assert not got.HasField("parallel_tool_calls")
    assert not got.sampling.HasField("temperature") and not got.sampling.HasField("top_p")


def test_tool_use_and_tool_result_round_trip() -> None:
    got = messages_of(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "let me ", "signature": "x"},
                    {"type": "thinking", "thinking": "look"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "tu_1", "name": "get", "input": {"city": "Oslo", "n": 1}},
                    {"type": "tool_use", "id": "tu_2", "name": "noargs"},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "before"},
                    {"type": "tool_result", "tool_use_id": "tu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "l1"}, {"type": "text", "text": "l2"}],
                    },
                    {"type": "tool_result", "tool_use_id": "tu_3"},
                    {"type": "text", "text": "after"},
                ],
            },
        ]
    )
    assert got == [
        {"role": "ROLE_USER", "content": [{"text": "weather?"}]},
        {
            "role": "ROLE_ASSISTANT",
            "content": [{"text": "checking"}],
            "reasoning": "let me look",
            "toolCalls": [
                {"id": "tu_1", "name": "get", "arguments": '{"city":"Oslo","n":1}'},
                {"id": "tu_2", "name": "noargs", "arguments": "{}"},
            ],
        },
        {"role": "ROLE_USER", "content": [{"text": "before"}]},
        {"role": "ROLE_TOOL", "toolCallId": "tu_1", "content": [{"text": "sunny"}]},
        {"role": "ROLE_TOOL", "toolCallId": "tu_2", "content": [{"text": "l1\nl2"}], "toolError": True},
        {"role": "ROLE_TOOL", "toolCallId": "tu_3", "content": [{"text": ""}]},
        {"role": "ROLE_USER", "content": [{"text": "after"}]},
    ]


def test_tool_result_only_message_has_no_empty_user_message() -> None:
    got = messages_of(
        messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "is_error": False}]}
        ]
    )
    assert got == [{"role": "ROLE_TOOL", "toolCallId": "a", "content": [{"text": ""}]}]


def test_assistant_message_of_only_tool_use_or_only_thinking() -> None:
    got = messages_of(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]},
            {"role": "user", "content": "more"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "deep"}]},
            {"role": "user", "content": []},
        ]
    )
    assert got == [
        {"role": "ROLE_USER", "content": [{"text": "go"}]},
        {"role": "ROLE_ASSISTANT", "toolCalls": [{"id": "t", "name": "n", "arguments": "{}"}]},
        {"role": "ROLE_USER", "content": [{"text": "more"}]},
        {"role": "ROLE_ASSISTANT", "reasoning": "deep"},
        {"role": "ROLE_USER"},
    ]
    # Only redacted thinking: nothing the gateway can use, so the message is dropped.
    got = messages_of(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "z"}]},
        ]
    )
    assert got == [{"role": "ROLE_USER", "content": [{"text": "go"}]}, {"role": "ROLE_ASSISTANT"}]


def test_images_and_documents_in_user_messages() -> None:
    got = messages_of(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                    {
                        "type": "document",
                        "title": "r.pdf",
                        "context": "a report",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    },
                    {"type": "document", "source": {"type": "text", "data": "plain words"}},
                    {
                        "type": "document",
                        "title": "notes",
                        "source": {"type": "text", "media_type": "text/markdown", "data": "# h"},
                    },
                    {"type": "document", "source": {"type": "url", "url": "https://x.test/d/paper.pdf?x=1"}},
                    {"type": "document", "source": {"type": "url", "url": "https://x.test/d/dir/"}},
                    {
                        "type": "document",
                        "title": "T",
                        "source": {"type": "url", "url": "https://x.test/u.pdf"},
                    },
                    {"type": "document", "source": {"type": "content", "content": "inline text"}},
                    {
                        "type": "document",
                        "source": {
                            "type": "content",
                            "content": [
                                {"type": "text", "text": "c1"},
                                {"type": "image", "source": {"type": "url", "url": "https://x.test/c.png"}},
                            ],
                        },
                    },
                ],
            }
        ]
    )
    assert got == [
        {
            "role": "ROLE_USER",
            "content": [
                {"image": {"url": "data:image/png;base64,AAA"}},
                {"image": {"url": "https://x.test/a.png"}},
                {"file": {"filename": "r.pdf", "url": "data:application/pdf;base64,JVBE"}},
                {"text": "a report"},
                {"file": {"mimeType": "text/plain", "data": "cGxhaW4gd29yZHM="}},
                {"file": {"filename": "notes", "mimeType": "text/markdown", "data": "IyBo"}},
                {"file": {"filename": "paper.pdf", "url": "https://x.test/d/paper.pdf?x=1"}},
                {"file": {"filename": "dir", "url": "https://x.test/d/dir/"}},
                {"file": {"filename": "T", "url": "https://x.test/u.pdf"}},
                {"text": "inline text"},
                {"text": "c1"},
                {"image": {"url": "https://x.test/c.png"}},
            ],
        }
    ]


def test_tool_result_with_images_and_documents_follows_as_user_message() -> None:
    got = messages_of(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "read_1",
                        "content": [
                            {"type": "text", "text": "see"},
                            {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}},
                            {
                                "type": "document",
                                "title": "f.pdf",
                                "source": {"type": "base64", "media_type": "application/pdf", "data": "QQ=="},
                            },
                        ],
                    }
                ],
            }
        ]
    )
    assert got == [
        {"role": "ROLE_TOOL", "toolCallId": "read_1", "content": [{"text": "see"}]},
        {
            "role": "ROLE_USER",
            "content": [
                {"image": {"url": "https://x.test/i.png"}},
                {"file": {"filename": "f.pdf", "url": "data:application/pdf;base64,QQ=="}},
            ],
        },
    ]


def test_mid_conversation_system_messages() -> None:
    got = messages_of(
        messages=[
            {"role": "user", "content": "u"},
            {"role": "system", "content": "s1"},
            {"role": "system", "content": [{"type": "text", "text": "s2"}, {"type": "text", "text": "s3"}]},
        ]
    )
    assert got == [
        {"role": "ROLE_USER", "content": [{"text": "u"}]},
        {"role": "ROLE_SYSTEM", "content": [{"text": "s1"}]},
        {"role": "ROLE_SYSTEM", "content": [{"text": "s2"}, {"text": "s3"}]},
    ]


@pytest.mark.parametrize(
    ("fields", "message", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "n"}]}]},
            "'messages[0].content[0]': tool_use blocks belong in assistant messages.",
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": "t"},
                            {"type": "tool_result", "tool_use_id": "a"},
                        ],
                    },
                ]
            },
            "'messages[1].content[1]': tool_result blocks belong in user messages.",
            "messages[1].content[1]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [
                            {"type": "text", "text": "ok"},
                            {"type": "image", "source": {"type": "url", "url": "u"}},
                        ],
                    }
                ]
            },
            "'messages[0].content[1]': only text blocks are accepted here.",
            "messages[0].content[1]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "file", "file_id": "f1"}}],
                    },
                ]
            },
            "'messages[1].content[0].source.file_id': file ids are not supported: this gateway has no "
            "Files API. Send the document inline (a base64, text or url source).",
            "messages[1].content[0].source.file_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x"},
                            {
                                "type": "tool_result",
                                "tool_use_id": "a",
                                "content": [
                                    {"type": "text", "text": "t"},
                                    {"type": "document", "source": {"type": "file", "file_id": "f"}},
                                ],
                            },
                        ],
                    }
                ]
            },
            "'messages[0].content[1].content[1].source.file_id': file ids are not supported: this gateway "
            "has no Files API. Send the document inline (a base64, text or url source).",
            "messages[0].content[1].content[1].source.file_id",
        ),
    ],
)
def test_refusals_name_the_block(fields: dict[str, Any], message: str, param: str) -> None:
    error = refusal(fields)
    assert (error.status, error.message, error.param, error.type) == (
        400,
        message,
        param,
        "invalid_request_error",
    )


# --- thinking and effort ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({}, chat_pb2.REASONING_EFFORT_UNSPECIFIED),
        ({"output_config": {}}, chat_pb2.REASONING_EFFORT_UNSPECIFIED),
        ({"output_config": {"effort": "low"}}, chat_pb2.REASONING_EFFORT_LOW),
        ({"output_config": {"effort": "medium"}}, chat_pb2.REASONING_EFFORT_MEDIUM),
        ({"output_config": {"effort": "high"}}, chat_pb2.REASONING_EFFORT_HIGH),
        ({"output_config": {"effort": "max"}}, chat_pb2.REASONING_EFFORT_XHIGH),
        (
            {"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}},
            chat_pb2.REASONING_EFFORT_UNSPECIFIED,
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "output_config": {"effort": "low"}},
            chat_pb2.REASONING_EFFORT_LOW,
        ),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}},
            chat_pb2.REASONING_EFFORT_XHIGH,
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, chat_pb2.REASONING_EFFORT_LOW),
        ({"thinking": {"type": "enabled", "budget_tokens": 4095}}, chat_pb2.REASONING_EFFORT_LOW),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, chat_pb2.REASONING_EFFORT_MEDIUM),
        ({"thinking": {"type": "enabled", "budget_tokens": 16383}}, chat_pb2.REASONING_EFFORT_MEDIUM),
        ({"thinking": {"type": "enabled", "budget_tokens": 16384}}, chat_pb2.REASONING_EFFORT_HIGH),
        ({"thinking": {"type": "enabled", "budget_tokens": 100000}}, chat_pb2.REASONING_EFFORT_HIGH),
        ({"thinking": {"type": "enabled"}}, chat_pb2.REASONING_EFFORT_MEDIUM),
        ({"thinking": {"type": "adaptive"}}, chat_pb2.REASONING_EFFORT_MEDIUM),
        ({"thinking": {"type": "adaptive", "budget_tokens": 100}}, chat_pb2.REASONING_EFFORT_MEDIUM),
    ],
)
def test_reasoning_effort(fields: dict[str, Any], effort: int) -> None:
    assert convert(**fields).reasoning_effort == effort
    assert to_chat_request(count_request(**fields), "r").reasoning_effort == effort


def test_count_tokens_request_has_no_sampling_or_user() -> None:
    got = to_chat_request(count_request(system="s", tools=[{"name": "t", "input_schema": {}}]), "c-1")
    assert got == expected(
        {
            "model": "m",
            "requestId": "c-1",
            "messages": [
                {"role": "ROLE_SYSTEM", "content": [{"text": "s"}]},
                {"role": "ROLE_USER", "content": [{"text": "hi"}]},
            ],
            "tools": [{"name": "t", "parameters": {}}],
        }
    )
    assert not got.HasField("sampling")


# --- answers -> Message objects ----------------------------------------------------------------


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_to_message_with_thinking_text_and_tools() -> None:
    response = chat_pb2.ChatResponse(
        model="served",
        content="hello",
        reasoning="hmm",
        finish_reason=chat_pb2.FINISH_REASON_TOOL_CALLS,
        usage=chat_pb2.Usage(prompt_tokens=11, completion_tokens=7, total_tokens=18),
        tool_calls=[
            chat_pb2.ToolCall(id="c1", name="get", arguments='{"a": 1}'),
            chat_pb2.ToolCall(id="c2", name="empty", arguments=""),
            chat_pb2.ToolCall(id="c3", name="broken", arguments="{not json"),
            chat_pb2.ToolCall(id="c4", name="list", arguments="[1, 2]"),
        ],
    )
    assert to_message(response, message_id="msg_1", model="asked") == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "served",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": SIG_HMM},
            {"type": "text", "text": "hello"},
            {"type": "tool_use", "id": "c1", "name": "get", "input": {"a": 1}},
            {"type": "tool_use", "id": "c2", "name": "empty", "input": {}},
            {"type": "tool_use", "id": "c3", "name": "broken", "input": {}},
            {"type": "tool_use", "id": "c4", "name": "list", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": usage(11, 7),
    }


def test_to_message_empty_answer_and_stop_sequence() -> None:
    response = chat_pb2.ChatResponse(finish_reason=chat_pb2.FINISH_REASON_STOP, stop_sequence="END")
    got: dict[str, Any] = dict(to_message(response, message_id="msg_2", model="asked"))
    assert got == {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "model": "asked",
        "content": [],
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "usage": usage(0, 0),
    }


@pytest.mark.parametrize(
    ("reason", "sequence", "want"),
    [
        (chat_pb2.FINISH_REASON_UNSPECIFIED, "", "end_turn"),
        (chat_pb2.FINISH_REASON_STOP, "", "end_turn"),
        (chat_pb2.FINISH_REASON_LENGTH, "", "max_tokens"),
        (chat_pb2.FINISH_REASON_TOOL_CALLS, "", "tool_use"),
        (chat_pb2.FINISH_REASON_CONTENT_FILTER, "", "refusal"),
        (99, "", "end_turn"),
        (chat_pb2.FINISH_REASON_STOP, "##", "stop_sequence"),
        (chat_pb2.FINISH_REASON_LENGTH, "##", "stop_sequence"),
    ],
)
def test_stop_reason(reason: int, sequence: str, want: str) -> None:
    assert stop_reason(reason, sequence) == want


def test_signature_is_stable_and_ids_are_fresh() -> None:
    assert signature("hmm") == SIG_HMM
    assert signature("ab") == SIG_AB
    first, second = new_message_id(), new_message_id()
    assert first.startswith("msg_") and len(first) == 4 + 24 and first != second
    int(first[4:], 16)


# --- stream events -----------------------------------------------------------------------------


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parses SSE bytes into (event, data) pairs, checking each frame's exact framing."""
    out = []
    assert raw.endswith(b"\n\n") or raw == b""
    for chunk in raw.split(b"\n\n")[:-1]:
        event_line, data_line = chunk.split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        out.append((event_line[7:].decode(), orjson.loads(data_line[6:])))
    return out


def text_event(text: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=text))


def reasoning_event(text: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text=text))


def call_event(index: int, id_: str = "", name: str = "", arguments: str = "") -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(
        tool_call=chat_pb2.ToolCallDelta(index=index, id=id_, name=name, arguments=arguments)
    )


def test_stream_of_thinking_text_and_tool_calls() -> None:
    stream = MessageStream(message_id="msg_s", model="claude-x")
    raw = stream.start(reasoning_event("a"))
    raw += stream.event(reasoning_event("a"))
    raw += stream.event(reasoning_event("b"))
    raw += stream.text("Hi")
    raw += stream.event(text_event(" there"))
    raw += stream.event(call_event(0, "tu_1", "get"))
    raw += stream.event(call_event(0, arguments='{"a":'))
    raw += stream.event(call_event(0, arguments="1}"))
    raw += stream.event(call_event(1, "tu_2", "put", "{}"))
    raw += stream.event(call_event(1))  # nothing to say
    raw += stream.event(chat_pb2.ChatEvent(usage=chat_pb2.Usage(prompt_tokens=9, completion_tokens=4)))
    raw += stream.event(chat_pb2.ChatEvent(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_TOOL_CALLS)))
    raw += stream.end()
    assert frames(raw) == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_s",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage(0, 0),
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "a"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "b"}},
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": SIG_AB},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " there"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "tu_1", "name": "get", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "1}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 3,
                "content_block": {"type": "tool_use", "id": "tu_2", "name": "put", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 3,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 3}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": usage(9, 4),
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_stream_text_only_bytes_are_exact() -> None:
    stream = MessageStream(message_id="m", model="x")
    raw = stream.text('a"b')
    assert raw == (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: ping\ndata: {"type":"ping"}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"a\\"b"}}\n\n'
    )
    assert stream.text("c") == (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"c"}}\n\n'
    )
    # A finish with no usage event before it, ended by a stop sequence; the stop closes the block once.
    raw = stream.event(
        chat_pb2.ChatEvent(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_STOP, stop_sequence="##"))
    )
    raw += stream.end()
    assert frames(raw) == [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "stop_sequence", "stop_sequence": "##"},
                "usage": usage(0, 0),
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_stream_thinking_closed_by_end_and_a_second_thinking_block() -> None:
    stream = MessageStream(message_id="m", model="x")
    raw = stream.event(reasoning_event("hmm"))
    raw += stream.text("t")
    raw += stream.event(reasoning_event("ab"))
    raw += stream.event(chat_pb2.ChatEvent())  # an unknown/empty event kind: skipped
    raw += stream.end()
    got = frames(raw)
    assert [e for e, _ in got] == [
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_stop",
    ]
    assert got[3][1] == {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": SIG_HMM},
    }
    assert got[8][1] == {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    assert got[10][1]["delta"] == {"type": "signature_delta", "signature": SIG_AB}
    assert got[11][1] == {"type": "content_block_stop", "index": 2}


def test_stream_tool_call_arguments_before_its_start_are_dropped() -> None:
    stream = MessageStream(message_id="m", model="x")
    assert stream.event(call_event(0, arguments="{")) == b""
    raw = stream.event(call_event(0, name="only_name"))
    assert frames(raw) == [
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "", "name": "only_name", "input": {}},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    # An id alone opens the block too, once; the same call's later deltas add to it.
    raw = stream.event(call_event(1, id_="only_id"))
    raw += stream.event(call_event(1, id_="only_id", arguments="{}"))
    assert frames(raw) == [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "only_id", "name": "", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            },
        ),
    ]


def test_stream_end_with_nothing_open_and_error_event() -> None:
    stream = MessageStream(message_id="m", model="x")
    assert stream.end() == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert stream.error(OpenAIError(503, "no account free")) == (
        b'event: error\ndata: {"type":"error",'
        b'"error":{"type":"overloaded_error","message":"no account free"}}\n\n'
    )
    assert stream.error(OpenAIError(400, "bad")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"invalid_request_error","message":"bad"}}\n\n'
    )


# --- survivors of `make mutate`: edge cases that pin the exact behaviour --------------------------


@pytest.mark.parametrize(
    ("url", "filename"),
    [
        ("https://x.test/a.pdf?x=1?y=2", "a.pdf"),  # the query starts at the first "?"
        ("https://x.test/dX/", "dX"),  # only slashes are stripped
        ("doc.pdf", "doc.pdf"),  # no slash at all: the whole URL names it
    ],
)
def test_document_url_names_the_file(url: str, filename: str) -> None:
    got = messages_of(
        messages=[{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": url}}]}]
    )
    assert got == [{"role": "ROLE_USER", "content": [{"file": {"filename": filename, "url": url}}]}]


def test_thinking_after_a_tool_result_in_a_user_message_is_kept() -> None:
    got = messages_of(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": "r"},
                    {"type": "thinking", "thinking": "th"},
                ],
            }
        ]
    )
    assert got == [
        {"role": "ROLE_TOOL", "toolCallId": "a", "content": [{"text": "r"}]},
        {"role": "ROLE_USER", "reasoning": "th"},
    ]


def test_dropped_input_is_logged_for_the_operator(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="facade.anthropic")
    convert(
        messages=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "z"}]},
        ],
        tools=[{"name": "web_search", "type": "web_search_20250305"}],
        top_k=3,
    )
    logged = [r.getMessage() for r in caplog.records if r.name == "facade.anthropic"]
    assert logged == [
        "dropped a redacted_thinking block: it is opaque to the gateway",
        "dropped server tool 'web_search' (type 'web_search_20250305'): the gateway cannot run it",
        "ignored top_k: the upstream has no such setting",
    ]
    caplog.clear()
    convert(top_k=None)
    assert [r for r in caplog.records if r.name == "facade.anthropic"] == []


def test_client_tools_after_a_server_tool_are_kept() -> None:
    got = convert(
        tools=[
            {"name": "web_search", "type": "web_search_20250305"},
            {"name": "after", "input_schema": {"type": "object"}},
        ]
    )
    assert [json_format.MessageToDict(t) for t in got.tools] == [
        {"name": "after", "parameters": {"type": "object"}}
    ]
