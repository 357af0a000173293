"""In-process unit tests of the Responses API <-> cursorgate.v1 seam (facade/openai_responses/convert.py).

Expected protos are written out as dicts (proto JSON) and response objects literally; nothing is
computed from the converter's own tables.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from google.protobuf import json_format

from cursorgate.v1 import chat_pb2
from facade.errors import OpenAIError
from facade.openai_responses.convert import (
    dump_items,
    error_object,
    function_call_item,
    input_items,
    message_item,
    new_id,
    output_items,
    reasoning_item,
    response_object,
    to_chat_request,
    to_messages,
    usage_object,
)
from facade.openai_responses.protocol import ITEMS, CreateResponseRequest


def body_of(**fields: Any) -> CreateResponseRequest:
    return CreateResponseRequest.model_validate({"model": "m", "input": "hi"} | fields)


def convert(**fields: Any) -> chat_pb2.ChatRequest:
    body = body_of(**fields)
    return to_chat_request(body, input_items(body), "resp-1")


def expected(value: dict[str, Any]) -> chat_pb2.ChatRequest:
    return json_format.ParseDict(value, chat_pb2.ChatRequest())


def messages_of(items: list[dict[str, Any]], instructions: str | None = None) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(m) for m in to_messages(ITEMS.validate_python(items), instructions)]


def refusal(**fields: Any) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        convert(**fields)
    return caught.value


# --- request conversion ---------------------------------------------------------------------


def test_minimal_request() -> None:
    assert convert() == expected(
        {
            "model": "m",
            "requestId": "resp-1",
            "messages": [{"role": "ROLE_USER", "content": [{"text": "hi"}]}],
        }
    )
    assert not convert().HasField("sampling")


def test_full_request() -> None:
    got = convert(
        instructions="be brief",
        input=[{"role": "developer", "content": "dev"}, {"type": "message", "role": "user", "content": "q"}],
        tools=[
            {
                "type": "function",
                "name": "get",
                "description": "gets",
                "parameters": {"type": "object"},
                "strict": True,
            },
            {"type": "function", "name": "bare"},
            {"type": "web_search"},
        ],
        tool_choice="required",
        parallel_tool_calls=False,
        reasoning={"effort": "high"},
        temperature=0.5,
        top_p=0.25,
        max_output_tokens=300,
        user="u-1",
        prompt_cache_key="conv-9",
    )
    assert got == expected(
        {
            "model": "m",
            "requestId": "resp-1",
            "user": "u-1",
            "affinityKey": "conv-9",
            "messages": [
                {"role": "ROLE_SYSTEM", "content": [{"text": "be brief"}]},
                {"role": "ROLE_DEVELOPER", "content": [{"text": "dev"}]},
                {"role": "ROLE_USER", "content": [{"text": "q"}]},
            ],
            "tools": [
                {"name": "get", "description": "gets", "parameters": {"type": "object"}, "strict": True},
                {"name": "bare"},
            ],
            "toolChoice": {"mode": "MODE_REQUIRED"},
            "parallelToolCalls": False,
            "reasoningEffort": "REASONING_EFFORT_HIGH",
            "sampling": {"temperature": 0.5, "topP": 0.25, "maxTokens": 300},
        }
    )
    assert not got.tools[1].HasField("parameters")


def test_affinity_falls_back_to_user() -> None:
    got = convert(user="u-2")
    assert (got.user, got.affinity_key) == ("u-2", "u-2")
    got = convert()
    assert (got.user, got.affinity_key) == ("", "")


@pytest.mark.parametrize(
    ("fields", "tool_choice"),
    [
        ({"tool_choice": "auto"}, {"mode": "MODE_AUTO"}),
        ({"tool_choice": "none"}, {"mode": "MODE_NONE"}),
        ({"tool_choice": "required"}, {"mode": "MODE_REQUIRED"}),
        (
            {"tool_choice": {"type": "function", "name": "get"}},
            {"mode": "MODE_FUNCTION", "functionName": "get"},
        ),
        ({"tool_choice": {"type": "function"}}, None),
        ({"tool_choice": {"type": "web_search"}}, None),
        ({}, None),
    ],
)
def test_tool_choice(fields: dict[str, Any], tool_choice: dict[str, Any] | None) -> None:
    got = convert(tools=[{"type": "function", "name": "get"}], **fields)
    want: dict[str, Any] = {
        "model": "m",
        "requestId": "resp-1",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "hi"}]}],
        "tools": [{"name": "get"}],
    }
    if tool_choice is not None:
        want["toolChoice"] = tool_choice
    assert got == expected(want)


@pytest.mark.parametrize("choice", ["required", "none", "auto"])
def test_tool_choice_with_only_hosted_tools_is_auto(choice: str) -> None:
    got = convert(tools=[{"type": "web_search"}], tool_choice=choice)
    assert got.tool_choice == chat_pb2.ToolChoice(mode=chat_pb2.ToolChoice.MODE_AUTO)
    assert len(got.tools) == 0


@pytest.mark.parametrize(
    ("effort", "want"),
    [
        ("none", chat_pb2.REASONING_EFFORT_NONE),
        ("minimal", chat_pb2.REASONING_EFFORT_MINIMAL),
        ("low", chat_pb2.REASONING_EFFORT_LOW),
        ("medium", chat_pb2.REASONING_EFFORT_MEDIUM),
        ("high", chat_pb2.REASONING_EFFORT_HIGH),
        ("xhigh", chat_pb2.REASONING_EFFORT_XHIGH),
    ],
)
def test_reasoning_effort(effort: str, want: int) -> None:
    assert convert(reasoning={"effort": effort}).reasoning_effort == want


def test_reasoning_without_effort_and_parallel_true() -> None:
    got = convert(reasoning={"summary": "auto"}, parallel_tool_calls=True)
    assert got.reasoning_effort == chat_pb2.REASONING_EFFORT_UNSPECIFIED
    assert got.HasField("parallel_tool_calls") and got.parallel_tool_calls is True
    assert not convert().HasField("parallel_tool_calls")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            {
                "format": {
                    "type": "json_schema",
                    "name": "out",
                    "schema": {"type": "object"},
                    "description": "d",
                    "strict": True,
                }
            },
            {
                "type": "TYPE_JSON_SCHEMA",
                "name": "out",
                "description": "d",
                "schema": {"type": "object"},
                "strict": True,
            },
        ),
        (
            {"format": {"type": "json_schema", "name": "loose", "schema": {}}},
            {"type": "TYPE_JSON_SCHEMA", "name": "loose", "schema": {}},
        ),
        ({"format": {"type": "json_object"}}, {"type": "TYPE_JSON_OBJECT"}),
        ({"format": {"type": "text"}}, None),
        ({"verbosity": "low"}, None),
        (None, None),
    ],
)
def test_text_format(text: dict[str, Any] | None, want: dict[str, Any] | None) -> None:
    got = convert(text=text)
    if want is None:
        assert not got.HasField("response_format")
    else:
        assert got.response_format == json_format.ParseDict(want, chat_pb2.ResponseFormat())


def test_empty_input_is_refused_naming_input() -> None:
    error = refusal(input=[])
    assert (error.status, error.message, error.param) == (
        400,
        "'input' must contain at least one item.",
        "input",
    )
    error = refusal(input=[{"type": "item_reference", "id": "x"}])
    assert (error.status, error.message, error.param) == (
        400,
        "'input' must contain at least one item.",
        "input",
    )


def test_instructions_alone_are_enough() -> None:
    got = convert(input=[], instructions="sys")
    assert got == expected(
        {
            "model": "m",
            "requestId": "resp-1",
            "messages": [{"role": "ROLE_SYSTEM", "content": [{"text": "sys"}]}],
        }
    )


# --- items -> messages ------------------------------------------------------------------------


def test_previous_response_items_with_reasoning_and_function_calls() -> None:
    got = messages_of(
        [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "r1"}, {"type": "summary_text", "text": ""}],
            },
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "r2"}, {"type": "summary_text", "text": "r3"}],
            },
            {"type": "reasoning", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "checking", "annotations": []},
                    {"type": "refusal", "refusal": "not that"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "get", "arguments": '{"a":1}'},
            {"type": "function_call", "call_id": "c2", "name": "noargs"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [
                    {"type": "input_text", "text": "o1"},
                    {"type": "output_text", "text": "o2"},
                    {"type": "refusal", "refusal": "o3"},
                ],
            },
            {"type": "web_search_call", "id": "ws"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "r4"}]},
            {"type": "function_call", "call_id": "c3", "name": "more", "arguments": "{}"},
        ],
        instructions="sys",
    )
    assert got == [
        {"role": "ROLE_SYSTEM", "content": [{"text": "sys"}]},
        {"role": "ROLE_USER", "content": [{"text": "weather?"}]},
        {
            "role": "ROLE_ASSISTANT",
            "content": [{"text": "checking"}, {"text": "not that"}],
            "reasoning": "r1\nr2\nr3",
            "toolCalls": [
                {"id": "c1", "name": "get", "arguments": '{"a":1}'},
                {"id": "c2", "name": "noargs"},
            ],
        },
        {"role": "ROLE_TOOL", "toolCallId": "c1", "content": [{"text": "sunny"}]},
        {"role": "ROLE_TOOL", "toolCallId": "c2", "content": [{"text": "o1\no2\no3"}]},
        {
            "role": "ROLE_ASSISTANT",
            "reasoning": "r4",
            "toolCalls": [{"id": "c3", "name": "more", "arguments": "{}"}],
        },
    ]


def test_reasoning_before_a_user_message_waits_for_the_assistant() -> None:
    got = messages_of(
        [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "held"}]},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": "b"},
        ]
    )
    assert got == [
        {"role": "ROLE_USER", "content": [{"text": "u"}]},
        {"role": "ROLE_ASSISTANT", "content": [{"text": "a"}], "reasoning": "held"},
        {"role": "ROLE_ASSISTANT", "content": [{"text": "b"}]},
    ]


def test_function_call_first_opens_an_assistant_message() -> None:
    got = messages_of([{"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"}])
    assert got == [{"role": "ROLE_ASSISTANT", "toolCalls": [{"id": "c", "name": "n", "arguments": "{}"}]}]
    # After a user message, a new assistant message; after an assistant one, the same.
    got = messages_of(
        [
            {"role": "user", "content": "u"},
            {"type": "function_call", "call_id": "a", "name": "n"},
            {"type": "function_call", "call_id": "b", "name": "n"},
        ]
    )
    assert got == [
        {"role": "ROLE_USER", "content": [{"text": "u"}]},
        {"role": "ROLE_ASSISTANT", "toolCalls": [{"id": "a", "name": "n"}, {"id": "b", "name": "n"}]},
    ]


def test_images_and_files_in_messages() -> None:
    got = messages_of(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA=="},
                    {
                        "type": "input_file",
                        "filename": "a.pdf",
                        "file_data": "data:application/pdf;base64,JVBE",
                    },
                    {"type": "input_file", "file_data": "JVBE"},
                    {"type": "input_file", "file_url": "https://x.test/b.pdf"},
                ],
            }
        ]
    )
    assert got == [
        {
            "role": "ROLE_USER",
            "content": [
                {"image": {"url": "https://x.test/a.png", "detail": "high"}},
                {"image": {"url": "data:image/png;base64,AA=="}},
                {"file": {"filename": "a.pdf", "url": "data:application/pdf;base64,JVBE"}},
                {"file": {"url": "data:;base64,JVBE"}},
                {"file": {"url": "https://x.test/b.pdf"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("input_", "message", "param", "code"),
    [
        (
            [
                {"role": "user", "content": "x"},
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "t"}, {"type": "input_image", "file_id": "f"}],
                },
            ],
            "Images must be given as 'image_url' (a data: or http(s) URL); file ids are not supported.",
            "input[1].content[1].image_url",
            None,
        ),
        (
            [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
            None,
            "input[0].content[0].file_id",
            "unsupported_value",
        ),
        (
            [{"role": "user", "content": [{"type": "input_file", "filename": "x"}]}],
            "A file part needs 'file_data'.",
            "input[0].content[0].file_data",
            None,
        ),
        (
            [
                {"role": "user", "content": "x"},
                {
                    "type": "function_call_output",
                    "call_id": "c",
                    "output": [{"type": "input_image", "image_url": "u"}],
                },
            ],
            "Tool outputs may hold text only.",
            "input[1].output",
            None,
        ),
    ],
)
def test_refusals(input_: list[dict[str, Any]], message: str | None, param: str, code: str | None) -> None:
    error = refusal(input=input_)
    assert (error.status, error.param, error.code) == (400, param, code)
    if message is not None:
        assert error.message == message
    else:
        assert "file" in error.message.lower()


def test_input_items_and_dump() -> None:
    body = body_of(input="hello")
    items = input_items(body)
    assert dump_items(items) == [{"type": "message", "role": "user", "content": "hello"}]
    body = body_of(
        input=[
            {"role": "assistant", "content": [{"type": "output_text", "text": "a"}], "id": "msg_1"},
            {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"},
        ]
    )
    assert dump_items(input_items(body)) == [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "a"}],
            "id": "msg_1",
        },
        {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"},
    ]


# --- the response object ---------------------------------------------------------------------


def test_usage_object() -> None:
    assert usage_object(chat_pb2.Usage(prompt_tokens=10, completion_tokens=5, reasoning_tokens=2)) == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    assert (
        usage_object(chat_pb2.Usage(prompt_tokens=10, completion_tokens=5, total_tokens=40))["total_tokens"]
        == 40
    )


def test_items() -> None:
    assert message_item("msg_1", "hi") == {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}],
    }
    assert message_item("msg_2", "", "in_progress") == {
        "id": "msg_2",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert reasoning_item("rs_1", "r") == {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "r"}],
    }
    assert reasoning_item("rs_2", "") == {"id": "rs_2", "type": "reasoning", "summary": []}
    assert function_call_item("fc_1", "c", "n", "{}") == {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "call_id": "c",
        "name": "n",
        "arguments": "{}",
    }
    assert function_call_item("fc_2", "c", "n", "", "in_progress")["status"] == "in_progress"


def test_new_id() -> None:
    first, second = new_id("rs"), new_id("rs")
    assert first.startswith("rs_") and len(first) == 3 + 24 and first != second
    int(first[3:], 16)


def test_output_items_order_and_ids() -> None:
    answer = chat_pb2.ChatResponse(
        content="hello",
        reasoning="think",
        tool_calls=[
            chat_pb2.ToolCall(id="c1", name="a", arguments="{}"),
            chat_pb2.ToolCall(id="c2", name="b", arguments='{"x":1}'),
        ],
    )
    got = output_items(answer)
    ids = [item.pop("id") for item in got]
    assert [i.split("_")[0] for i in ids] == ["rs", "msg", "fc", "fc"]
    assert all(len(i.split("_")[1]) == 24 for i in ids) and len(set(ids)) == 4
    assert got == [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
        {
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}],
        },
        {"type": "function_call", "status": "completed", "call_id": "c1", "name": "a", "arguments": "{}"},
        {
            "type": "function_call",
            "status": "completed",
            "call_id": "c2",
            "name": "b",
            "arguments": '{"x":1}',
        },
    ]
    assert output_items(chat_pb2.ChatResponse()) == []


def test_response_object_defaults() -> None:
    body = body_of()
    assert response_object(body, response_id="resp_1", created_at=1700, status="in_progress", output=[]) == {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": "m",
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }


def test_response_object_echoes_the_request() -> None:
    body = body_of(
        instructions="sys",
        max_output_tokens=50,
        parallel_tool_calls=False,
        previous_response_id="resp_0",
        prompt_cache_key="k",
        reasoning={"effort": "low", "generate_summary": "concise"},
        store=False,
        temperature=0.3,
        top_p=0.7,
        truncation="auto",
        user="u",
        metadata={"a": "b"},
        text={"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": True}},
        tool_choice={"type": "function", "name": "get"},
        tools=[{"type": "function", "name": "get", "parameters": {"type": "object"}}, {"type": "web_search"}],
    )
    output = [reasoning_item("rs_1", "r")]
    error = {"code": "server_error", "message": "m", "type": "t", "param": None}
    got = response_object(
        body,
        response_id="resp_2",
        created_at=5,
        status="incomplete",
        output=output,
        usage=chat_pb2.Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
        error=error,
        incomplete_reason="max_output_tokens",
    )
    assert got == {
        "id": "resp_2",
        "object": "response",
        "created_at": 5,
        "status": "incomplete",
        "background": False,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"},
        "instructions": "sys",
        "max_output_tokens": 50,
        "max_tool_calls": None,
        "model": "m",
        "output": output,
        "parallel_tool_calls": False,
        "previous_response_id": "resp_0",
        "prompt_cache_key": "k",
        "reasoning": {"effort": "low", "summary": "concise"},
        "service_tier": "default",
        "store": False,
        "temperature": 0.3,
        "text": {
            "format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": True},
            "verbosity": "medium",
        },
        "tool_choice": {"type": "function", "name": "get"},
        "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}],
        "top_p": 0.7,
        "truncation": "auto",
        "usage": {
            "input_tokens": 3,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 7,
        },
        "user": "u",
        "metadata": {"a": "b"},
    }


def test_response_object_summary_prefers_summary_and_string_tool_choice() -> None:
    body = body_of(
        reasoning={"summary": "detailed", "generate_summary": "concise"}, tool_choice="none", text={}
    )
    got = response_object(body, response_id="r", created_at=0, status="completed", output=[])
    assert got["reasoning"] == {"effort": None, "summary": "detailed"}
    assert got["tool_choice"] == "none"
    assert got["text"] == {"format": {"type": "text"}, "verbosity": "medium"}


@pytest.mark.parametrize(
    ("code", "want"),
    [
        ("rate_limit_exceeded", "rate_limit_exceeded"),
        ("insufficient_quota", "rate_limit_exceeded"),
        ("upstream_error", "server_error"),
        (None, "server_error"),
    ],
)
def test_error_object(code: str | None, want: str) -> None:
    failure = OpenAIError(429, "slow down", type="rate_limit_error", param="p", code=code)
    assert error_object(failure) == {
        "code": want,
        "message": "slow down",
        "type": "rate_limit_error",
        "param": "p",
    }


# --- survivors of `make mutate`: edge cases that pin the exact behaviour --------------------------


def test_reasoning_items_before_a_function_call_join_with_newlines() -> None:
    got = messages_of(
        [
            {"role": "user", "content": "u"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "r1"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "r2"}]},
            {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"},
        ]
    )
    assert got == [
        {"role": "ROLE_USER", "content": [{"text": "u"}]},
        {
            "role": "ROLE_ASSISTANT",
            "reasoning": "r1\nr2",
            "toolCalls": [{"id": "c", "name": "n", "arguments": "{}"}],
        },
    ]


def test_dropped_input_is_logged_for_the_operator(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="facade.responses")
    convert(
        input=[{"role": "user", "content": "x"}, {"type": "item_reference", "id": "ref"}],
        tools=[{"type": "function", "name": "f"}, {"type": "web_search"}],
        tool_choice={"type": "allowed_tools"},
    )
    logged = [
        r.getMessage() for r in caplog.records if r.name == "facade.responses" and "ignoring" not in r.msg
    ]
    assert logged == [
        "skipping input item of type 'item_reference': the gateway cannot use it",
        "dropping built-in tool of type 'web_search': the gateway cannot run it",
        "tool_choice of type 'allowed_tools' treated as auto",
    ]
