"""Unit tests of the agent dialect: wire bytes worked out by hand from the fact sheet
(../shared/research/agent-protocol.md §3), the run request, and a Run's frames -> events + replies.

Bytes are written as field tags by hand: tag = (field number << 3) | wire type, LEN = 2, VARINT = 0.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from google.protobuf import struct_pb2

from agent.v1 import agent_pb2 as agent
from core.upstream.agent import values
from core.upstream.agent.events import HANDOFF, AgentExchange
from core.upstream.agent.request import MODE_AGENT, MODE_ASK, BlobStore, build_run
from core.upstream.images import ImageLoader
from cursorgate.v1 import chat_pb2

Role = chat_pb2.Role


def server(raw: bytes) -> agent.AgentServerMessage:
    return agent.AgentServerMessage.FromString(raw)


def exchange(tools: list[str] | None = None, max_calls: int | None = None) -> AgentExchange:
    defs = [agent.McpToolDefinition(name=n, tool_name=n, provider_identifier="pi-agent") for n in tools or []]
    opening = agent.AgentClientMessage(run_request=agent.AgentRunRequest())
    return AgentExchange(opening, BlobStore(), defs, max_calls=max_calls)


def sent(ex: AgentExchange) -> list[bytes]:
    out = [m.SerializeToString() for m in ex.outbox]
    ex.outbox.clear()
    return out


# --- envelopes and values


def test_client_heartbeat_bytes() -> None:
    # AgentClientMessage field 7 (client_heartbeat), LEN, empty: tag 0x3a, length 0.
    beat = exchange().heartbeat()
    assert beat is not None and beat.SerializeToString() == b"\x3a\x00"


def test_run_request_skeleton_bytes() -> None:
    # AgentClientMessage{1 run_request{1 conversation_state{} (present, empty), 3 model_details{1 "m"}}}
    # run_request: 0a 00 | 1a 03 0a 01 6d  -> 7 bytes; outer: 0a 07 ...
    message = agent.AgentClientMessage()
    message.run_request.conversation_state.SetInParent()
    message.run_request.model_details.model_id = "m"
    assert message.SerializeToString() == bytes.fromhex("0a07 0a00 1a03 0a016d")


def test_schema_value_bytes() -> None:
    # Value{5 struct_value{1 fields{1 "type", 2 Value{3 "object"}}}}:
    #   Value "object" = 1a 06 6f626a656374 (8 bytes); entry = 0a 04 74797065 12 08 <8> (16);
    #   Struct = 0a 10 <16> (18); Value = 2a 12 <18>.
    expected = bytes.fromhex("2a12 0a10 0a04 74797065 1208 1a06 6f626a656374")
    assert values.encode({"type": "object"}) == expected
    assert values.decode(expected) == {"type": "object"}


def test_mcp_argument_values_decode_to_json() -> None:
    paris = bytes.fromhex("1a05 5061726973")  # Value{3 string_value "Paris"}
    one = bytes.fromhex("11 000000000000f03f")  # Value{2 number_value 1.0 (fixed64 little-endian)}
    yes = bytes.fromhex("2001")  # Value{4 bool_value true}
    args = {"city": paris, "days": one, "metric": yes}
    assert json.loads(values.args_json(args)) == {"city": "Paris", "days": 1, "metric": True}
    # What is not a Value is read as JSON text, then as a plain string, never dropped.
    assert values.decode(b'{"a": 2}') == {"a": 2}
    assert values.decode(b"\xff\xfeplain") == "\ufffd\ufffdplain"


def test_tool_arguments_round_trip_through_the_args_map() -> None:
    mapped = values.args_map('{"city": "Paris", "n": [1, 2.5], "x": null}')
    assert mapped["city"] == bytes.fromhex("1a05 5061726973")
    assert json.loads(values.args_json(mapped)) == {"city": "Paris", "n": [1, 2.5], "x": None}
    assert json.loads(values.args_json(values.args_map("[1]"))) == {"args": [1]}


# --- a Run's frames -> events and replies


def test_golden_text_thinking_usage_sequence() -> None:
    ex = exchange()
    events = []
    for raw in (
        bytes.fromhex("0a06 2204 0a02 686d"),  # interaction_update{4 thinking_delta{1 "hm"}}
        bytes.fromhex("0a06 0a04 0a02 4869"),  # interaction_update{1 text_delta{1 "Hi"}}
        bytes.fromhex("0a04 4202 0805"),  # interaction_update{8 token_delta{1 5}}: a UI counter
        bytes.fromhex("0a02 6a00"),  # interaction_update{13 heartbeat{}}
        # interaction_update{14 turn_ended{1 100, 2 20, 3 40, 5 7}}: 08 64 10 14 18 28 28 07
        bytes.fromhex("0a0a 7208 0864 1014 1828 2807"),
    ):
        events += ex.feed(server(raw))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["reasoning", "text", "usage"]
    assert (events[0].reasoning.text, events[1].text.text) == ("hm", "Hi")
    usage = events[2].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 20, 120)
    assert (usage.cache_read_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (40, 0, 7)
    assert usage.estimated is False
    assert ex.done and not ex.outbox and not ex.skipped


def test_request_context_is_answered_with_the_tools() -> None:
    ex = exchange(["get_weather"])
    # exec_server_message{1 id 1, 15 exec_id "e", 10 request_context_args{}}: 08 01 52 00 7a 01 65
    assert ex.feed(server(bytes.fromhex("1207 0801 5200 7a0165"))) == []
    (reply,) = ex.outbox
    result = reply.exec_client_message
    assert (result.id, result.exec_id) == (1, "e")
    assert [t.name for t in result.request_context_result.success.request_context.tools] == ["get_weather"]


def test_builtin_read_is_rejected_with_its_path() -> None:
    ex = exchange()
    # exec_server_message{1 id 3, 7 read_args{1 "/etc/passwd"}, 15 "x"}
    raw = bytes.fromhex("1214 0803 3a0d 0a0b") + b"/etc/passwd" + bytes.fromhex("7a0178")
    assert ex.feed(server(raw)) == []
    (reply,) = sent(ex)
    # AgentClientMessage{2 exec_client_message{1 id 3, 7 read_result{3 rejected{1 path, 2 reason}}, 15 "x"}}
    inner = agent.AgentClientMessage.FromString(reply).exec_client_message.SerializeToString()
    assert inner.startswith(bytes.fromhex("0803 3a"))  # id 3, then field 7 (read_result)
    # read_result's length is a two-byte varint (the reason is long); then field 3 (rejected), LEN.
    assert inner[3] & 0x80 and not inner[4] & 0x80 and inner[5] == 0x1A
    assert inner.endswith(bytes.fromhex("7a0178"))
    rejected = agent.AgentClientMessage.FromString(reply).exec_client_message.read_result.rejected
    assert rejected.path == "/etc/passwd" and "runs no code" in rejected.reason
    assert ex.skipped["builtin:read_args"] == 1


def test_builtin_shell_and_stream_are_rejected() -> None:
    ex = exchange()
    ex.feed(
        server(
            agent.AgentServerMessage(
                exec_server_message=agent.ExecServerMessage(
                    id=4, shell_args=agent.ShellArgs(command="rm -rf /")
                )
            ).SerializeToString()
        )
    )
    (reply,) = ex.outbox
    assert reply.exec_client_message.shell_result.rejected.command == "rm -rf /"
    ex.outbox.clear()
    ex.feed(
        agent.AgentServerMessage(
            exec_server_message=agent.ExecServerMessage(id=5, shell_stream_args=agent.ShellArgs(command="ls"))
        )
    )
    result, close = ex.outbox
    assert result.exec_client_message.shell_stream.rejected.command == "ls"
    assert close.exec_client_control_message.stream_close.id == 5


def test_unknown_exec_kind_is_thrown_not_left_waiting() -> None:
    ex = exchange()
    # exec_server_message{1 id 9, 99 <LEN 0>}: field 99 LEN = varint 0x31a -> 9a 06
    assert ex.feed(server(bytes.fromhex("1205 0809 9a06 00"))) == []
    (reply,) = sent(ex)
    # AgentClientMessage{5 exec_client_control_message{2 throw{1 id 9, 2 error, 4 error_code}}}
    assert reply.startswith(bytes.fromhex("2a")) and bytes.fromhex("0809") in reply
    control = agent.AgentClientMessage.FromString(reply).exec_client_control_message
    assert control.throw.id == 9
    assert ex.skipped["exec:99"] == 1


def test_kv_set_is_stored_and_acked_get_serves_it() -> None:
    ex = exchange()
    # kv_server_message{1 id 5, 3 set_blob_args{1 "k", 2 "data"}}
    ex.feed(server(bytes.fromhex("220d 0805 1a09 0a016b 120464617461")))
    # AgentClientMessage{3 kv_client_message{1 id 5, 3 set_blob_result{}}}
    assert sent(ex) == [bytes.fromhex("1a04 0805 1a00")]
    ex.feed(server(bytes.fromhex("2207 0806 1203 0a016b")))  # get_blob_args{1 "k"}, id 6
    # kv_client_message{1 id 6, 2 get_blob_result{1 "data"}}
    assert sent(ex) == [bytes.fromhex("1a0a 0806 1206 0a0464617461")]
    ex.feed(server(bytes.fromhex("2207 0807 1203 0a016e")))  # an unknown blob "n", id 7
    assert sent(ex) == [bytes.fromhex("1a04 0807 1200")]  # an empty result: not found


def test_interaction_queries_are_all_answered() -> None:
    ex = exchange()
    ex.feed(server(bytes.fromhex("3a04 0801 1200")))  # interaction_query{1 id 1, 2 web_search{}}
    # AgentClientMessage{6 interaction_response{1 id 1, 2 {1 approved{}}}}
    assert sent(ex) == [bytes.fromhex("3206 0801 1202 0a00")]
    ex.feed(server(bytes.fromhex("3a04 0802 2200")))  # 4 switch_mode_request_query: declined
    (reply,) = sent(ex)
    assert agent.AgentClientMessage.FromString(
        reply
    ).interaction_response.switch_mode_request_response.rejected.reason
    ex.feed(server(bytes.fromhex("3a05 0803 f20100")))  # field 30, a kind newer than the schema
    # answered "approved" under the same field number: 32 LEN 08 03 f2 01 02 0a 00
    assert sent(ex) == [bytes.fromhex("3207 0803 f201020a00")]
    assert ex.skipped["query:30"] == 1


def test_unknown_messages_are_skipped_and_counted() -> None:
    ex = exchange()
    assert ex.feed(server(bytes.fromhex("4200"))) == []  # AgentServerMessage field 8 (ttft_breakdown)
    assert ex.feed(server(bytes.fromhex("0a03 ca0100"))) == []  # interaction_update field 25
    assert ex.feed(server(b"")) == []
    assert ex.skipped == {"server:8": 1, "update:25": 1, "server:empty": 1}
    assert not ex.outbox and not ex.done


def test_caller_tool_call_is_handed_off_and_the_wind_down_dropped() -> None:
    ex = exchange(["get_weather"])
    shown = agent.ToolCall(
        mcp_tool_call=agent.McpToolCall(args=agent.McpArgs(tool_call_id="toolu_1", tool_name="get_weather"))
    )
    started = ex.feed(
        agent.AgentServerMessage(
            interaction_update=agent.InteractionUpdate(
                partial_tool_call=agent.PartialToolCallUpdate(call_id="toolu_1", tool_call=shown)
            )
        )
    )
    assert [(e.tool_call.index, e.tool_call.id, e.tool_call.name) for e in started] == [
        (0, "toolu_1", "get_weather")
    ]
    args = agent.McpArgs(
        name="get_weather",
        tool_name="get_weather",
        tool_call_id="toolu_1",
        args={"city": bytes.fromhex("1a05 5061726973")},
    )
    (event,) = ex.feed(
        agent.AgentServerMessage(
            exec_server_message=agent.ExecServerMessage(id=2, exec_id="z", mcp_args=args)
        )
    )
    assert (event.tool_call.index, event.tool_call.id, json.loads(event.tool_call.arguments)) == (
        0,
        "",
        {"city": "Paris"},
    )
    (reply,) = ex.outbox
    result = reply.exec_client_message
    assert (result.id, result.exec_id, result.mcp_result.success.content[0].text.text) == (2, "z", HANDOFF)
    wind_down = agent.AgentServerMessage(
        interaction_update=agent.InteractionUpdate(text_delta=agent.TextDeltaUpdate(text="waiting"))
    )
    assert ex.feed(wind_down) == []


def test_undeclared_tool_gets_tool_not_found() -> None:
    ex = exchange(["get_weather"])
    args = agent.McpArgs(name="rm", tool_name="rm", tool_call_id="toolu_2")
    assert (
        ex.feed(agent.AgentServerMessage(exec_server_message=agent.ExecServerMessage(id=1, mcp_args=args)))
        == []
    )
    (reply,) = ex.outbox
    assert reply.exec_client_message.mcp_result.tool_not_found.available_tools == ["get_weather"]


def test_parallel_calls_off_passes_only_the_first() -> None:
    ex = exchange(["a", "b"], max_calls=1)
    out = []
    for n, name in enumerate(("a", "b")):
        args = agent.McpArgs(name=name, tool_name=name, tool_call_id=f"toolu_{n}")
        out += ex.feed(
            agent.AgentServerMessage(exec_server_message=agent.ExecServerMessage(id=n, mcp_args=args))
        )
    assert [e.tool_call.name for e in out] == ["a"]
    assert len(ex.outbox) == 2  # both execs answered all the same


# --- the run request


def text(role: int, value: str, **kw: object) -> chat_pb2.Message:
    return chat_pb2.Message(role=role, content=[chat_pb2.ContentPart(text=value)], **kw)  # type: ignore[arg-type]


async def test_plain_chat_is_ask_mode_with_an_empty_tool_table() -> None:
    request = chat_pb2.ChatRequest(model="gpt-5.2", messages=[text(Role.ROLE_USER, "hi")])
    run = await build_run(request, ImageLoader(1024, 1.0), model="gpt-5.2")
    body = run.message.run_request
    assert body.conversation_state.mode == MODE_ASK == body.action.user_message_action.user_message.mode
    assert body.HasField("mcp_tools") and not body.mcp_tools.mcp_tools
    assert bytes.fromhex("2200") in body.SerializeToString()  # field 4 present and empty
    assert body.model_details.model_id == body.requested_model.model_id == "gpt-5.2"
    assert body.conversation_id == body.conversation_group_id and body.run_id
    assert not body.conversation_state.turns and not body.conversation_state.root_prompt_messages_json


async def test_history_is_replayed_as_blobs_and_structured_turns() -> None:
    tool = chat_pb2.Tool(name="get_weather", description="w")
    tool.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    call = chat_pb2.ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}')
    request = chat_pb2.ChatRequest(
        model="m",
        tools=[tool],
        messages=[
            text(Role.ROLE_SYSTEM, "be brief"),
            text(Role.ROLE_USER, "weather?"),
            chat_pb2.Message(role=Role.ROLE_ASSISTANT, tool_calls=[call]),
            text(Role.ROLE_TOOL, "sunny", tool_call_id="toolu_1"),
        ],
    )
    run = await build_run(request, ImageLoader(1024, 1.0), model="m")
    body = run.message.run_request
    state = body.conversation_state
    assert state.mode == MODE_AGENT
    (definition,) = body.mcp_tools.mcp_tools
    assert (
        definition.provider_identifier == "pi-agent"
        and json.loads(definition.input_schema_json)["type"] == "object"
    )
    assert values.decode(definition.input_schema)["properties"] == {"city": {"type": "string"}}
    prompt = [json.loads(run.store.get(b) or b"") for b in state.root_prompt_messages_json]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "tool"]
    assert prompt[0]["content"] == "be brief" and prompt[3]["content"][0]["result"] == "sunny"
    (turn_id,) = state.turns
    turn = agent.ConversationTurnStructure.FromString(run.store.get(turn_id) or b"").agent_conversation_turn
    assert agent.UserMessage.FromString(run.store.get(turn.user_message) or b"").text == "weather?"
    (step_id,) = turn.steps
    step = agent.ConversationStep.FromString(run.store.get(step_id) or b"")
    mcp = step.tool_call.mcp_tool_call
    assert (mcp.args.tool_call_id, mcp.args.name, step.tool_call.tool_call_id) == (
        "toolu_1",
        "get_weather",
        "toolu_1",
    )
    assert json.loads(values.args_json(mcp.args.args)) == {"city": "Paris"}
    assert mcp.result.success.content[0].text.text == "sunny"
    # The conversation ends with a tool result: the action carries no new user text.
    assert body.action.user_message_action.user_message.text == ""
    # Every id is the SHA-256 of its blob.
    assert all(hashlib.sha256(data).digest() == key for key, data in run.store.blobs.items())


def test_value_module_matches_google_protobuf() -> None:
    # The codec is google.protobuf's own Value, not hand-written bytes.
    assert (
        values.encode([1, "a"])
        == struct_pb2.Value(
            list_value=struct_pb2.ListValue(
                values=[struct_pb2.Value(number_value=1), struct_pb2.Value(string_value="a")]
            )
        ).SerializeToString()
    )


def test_discovered_agent_host_applies_to_cursors_own_upstream_only() -> None:
    from core.config import CoreSettings
    from core.upstream.context import UpstreamContext

    cursor = UpstreamContext.create(CoreSettings())
    cursor.discovered_agent_url = "https://agentn.us.api5.cursor.sh"
    assert cursor.agent_url == "https://agentn.us.api5.cursor.sh"
    other = UpstreamContext.create(CoreSettings(upstream_url="http://127.0.0.1:9"))
    other.discovered_agent_url = "https://agent.simulator.invalid"
    assert other.agent_url == "http://127.0.0.1:9"


# --- where a call's name and id come from (the two sources differ) ------------------------------


def exec_mcp(args: agent.McpArgs, n: int = 1) -> agent.AgentServerMessage:
    return agent.AgentServerMessage(exec_server_message=agent.ExecServerMessage(id=n, mcp_args=args))


def partial(args: agent.McpArgs, envelope_id: str | None = None) -> agent.AgentServerMessage:
    call = agent.ToolCall(mcp_tool_call=agent.McpToolCall(args=args))
    if envelope_id is not None:
        call.tool_call_id = envelope_id
    update = agent.PartialToolCallUpdate(call_id="ignored", tool_call=call)
    return agent.AgentServerMessage(interaction_update=agent.InteractionUpdate(partial_tool_call=update))


def test_exec_prefers_the_declared_tool_name_over_the_display_name() -> None:
    ex = exchange(["get_weather"])
    args = agent.McpArgs(name="pi-agent-get_weather", tool_name="get_weather", tool_call_id="toolu_1")
    (event,) = ex.feed(exec_mcp(args))
    assert (event.tool_call.id, event.tool_call.name, event.tool_call.arguments) == (
        "toolu_1",
        "get_weather",
        "{}",
    )


def test_exec_falls_back_to_name_when_tool_name_is_empty() -> None:
    ex = exchange(["get_weather"])
    (event,) = ex.feed(exec_mcp(agent.McpArgs(name="get_weather", tool_call_id="toolu_1")))
    assert (event.tool_call.id, event.tool_call.name) == ("toolu_1", "get_weather")


def test_exec_without_a_call_id_gets_a_toolu_id() -> None:
    ex = exchange(["f"])
    (event,) = ex.feed(exec_mcp(agent.McpArgs(tool_name="f")))
    assert event.tool_call.id.startswith("toolu_") and len(event.tool_call.id) == len("toolu_") + 16
    assert event.tool_call.name == "f"


def test_exec_of_a_display_name_alone_is_not_found() -> None:
    """`name` is only the fallback: a declared tool reached through tool_name is not found by name."""
    ex = exchange(["get_weather"])
    assert ex.feed(exec_mcp(agent.McpArgs(name="get_weather", tool_name="other", tool_call_id="t"))) == []
    (reply,) = ex.outbox
    assert reply.exec_client_message.mcp_result.tool_not_found.name == "other"


def test_progress_takes_the_id_and_name_from_the_args_first() -> None:
    ex = exchange(["get_weather"])
    args = agent.McpArgs(name="display", tool_name="get_weather", tool_call_id="toolu_a")
    (event,) = ex.feed(partial(args, envelope_id="toolu_envelope"))
    assert (event.tool_call.index, event.tool_call.id, event.tool_call.name) == (0, "toolu_a", "get_weather")
    assert ex.feed(partial(args, envelope_id="toolu_envelope")) == []  # announced once


def test_progress_falls_back_to_the_envelope_id_and_the_display_name() -> None:
    ex = exchange(["get_weather"])
    (event,) = ex.feed(partial(agent.McpArgs(name="get_weather"), envelope_id="toolu_env"))
    assert (event.tool_call.id, event.tool_call.name) == ("toolu_env", "get_weather")


def test_progress_without_any_id_or_for_an_undeclared_tool_says_nothing() -> None:
    ex = exchange(["get_weather"])
    assert ex.feed(partial(agent.McpArgs(tool_name="get_weather"))) == []
    assert ex.feed(partial(agent.McpArgs(tool_name="rm", tool_call_id="toolu_x"))) == []


# --- every interaction query kind and the answer it gets (agent-protocol.md §4.4), written out ---

NOT_SUPPORTED_TEXT = "Not supported by this client."


@pytest.mark.parametrize(
    ("query", "response", "answer"),
    [
        ("web_search_request_query", "web_search_request_response", "approved"),
        ("ask_question_interaction_query", "ask_question_interaction_response", "question rejected"),
        ("switch_mode_request_query", "switch_mode_request_response", "rejected"),
        ("exa_search_request_query", "exa_search_request_response", "approved"),
        ("exa_fetch_request_query", "exa_fetch_request_response", "approved"),
        ("create_plan_request_query", "create_plan_request_response", "plan error"),
        ("setup_vm_environment_args", "setup_vm_environment_result", "vm success"),
        ("web_fetch_request_query", "web_fetch_request_response", "approved"),
    ],
)
def test_each_interaction_query_kind(query: str, response: str, answer: str) -> None:
    ex = exchange()
    asked = agent.InteractionQuery(id=7)
    getattr(asked, query).SetInParent()
    assert ex.feed(agent.AgentServerMessage(interaction_query=asked)) == []
    (reply,) = ex.outbox
    got = reply.interaction_response
    assert got.id == 7 and got.WhichOneof("result") == response
    target = getattr(got, response)
    if answer == "approved":
        assert target.WhichOneof("result") == "approved"
    elif answer == "rejected":
        assert target.rejected.reason == NOT_SUPPORTED_TEXT
    elif answer == "question rejected":
        assert target.result.rejected.reason == NOT_SUPPORTED_TEXT
    elif answer == "plan error":
        assert target.result.error.error == NOT_SUPPORTED_TEXT
    else:
        assert target.WhichOneof("result") == "success"


def test_turn_ended_counts_every_token_kind() -> None:
    ended = agent.TurnEndedUpdate(
        input_tokens=1000, output_tokens=50, cache_read_tokens=600, cache_write_tokens=9, reasoning_tokens=30
    )
    (event,) = exchange().feed(
        agent.AgentServerMessage(interaction_update=agent.InteractionUpdate(turn_ended=ended))
    )
    usage = event.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 50, 1050)
    assert (usage.cache_read_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (600, 9, 30)
    assert usage.estimated is False


def test_finish_logs_what_was_skipped(caplog: pytest.LogCaptureFixture) -> None:
    ex = exchange()
    ex.feed(server(b""))
    ex.feed(server(b""))
    with caplog.at_level("INFO"):
        assert ex.finish() == []
    assert "agent run: skipped unknown messages {'server:empty': 2}" in [
        r.getMessage() for r in caplog.records
    ]


def test_finish_logs_nothing_when_nothing_was_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        assert exchange().finish() == []
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


# --- exec requests answered without running anything, field by field ---


def exec_of(n: int, **kind: Any) -> agent.AgentServerMessage:
    return agent.AgentServerMessage(
        exec_server_message=agent.ExecServerMessage(id=n, exec_id=f"e{n}", **kind)
    )


def test_request_context_in_full() -> None:
    ex = exchange(["get_weather"])
    ex.feed(exec_of(1, request_context_args=agent.RequestContextArgs()))
    (reply,) = ex.outbox
    context = reply.exec_client_message.request_context_result.success.request_context
    assert [t.name for t in context.tools] == ["get_weather"]
    assert context.HasField("web_search_enabled") and context.web_search_enabled is False
    assert context.env.time_zone == "UTC"


@pytest.mark.parametrize(
    ("wanted", "listed"),
    [([], True), (["pi-agent"], True), (["other", "pi-agent"], True), (["other"], False)],
)
def test_mcp_state_lists_the_callers_tools_as_one_server(wanted: list[str], listed: bool) -> None:
    ex = exchange(["get_weather", "get_time"])
    ex.feed(exec_of(2, mcp_state_exec_args=agent.McpStateExecArgs(server_identifiers=wanted)))
    (reply,) = ex.outbox
    result = reply.exec_client_message
    assert (result.id, result.exec_id) == (2, "e2")
    assert result.mcp_state_exec_result.WhichOneof("result") == "success"
    servers = result.mcp_state_exec_result.success.servers
    if not listed:
        assert list(servers) == []
        return
    (server_,) = servers
    assert (server_.server_name, server_.server_identifier, server_.status) == (
        "pi-agent",
        "pi-agent",
        "connected",
    )
    assert [t.name for t in server_.tools] == ["get_weather", "get_time"]


@pytest.mark.parametrize(
    ("args", "result"),
    [
        ("shell_allowlist_precheck_args", "shell_allowlist_precheck_result"),
        ("mcp_allowlist_precheck_args", "mcp_allowlist_precheck_result"),
        ("web_fetch_allowlist_precheck_args", "web_fetch_allowlist_precheck_result"),
    ],
)
def test_allowlist_prechecks_answer_allowlisted(args: str, result: str) -> None:
    ex = exchange()
    message = agent.ExecServerMessage(id=3, exec_id="e3")
    getattr(message, args).SetInParent()
    assert ex.feed(agent.AgentServerMessage(exec_server_message=message)) == []
    (reply,) = ex.outbox
    answer = reply.exec_client_message
    assert (answer.id, answer.exec_id) == (3, "e3")
    assert answer.WhichOneof("message") == result
    assert getattr(answer, result).allowlisted is True


def test_shell_rejection_carries_command_directory_and_reason() -> None:
    ex = exchange()
    ex.feed(exec_of(4, shell_args=agent.ShellArgs(command="make", working_directory="/src")))
    (reply,) = ex.outbox
    rejected = reply.exec_client_message.shell_result.rejected
    assert (rejected.command, rejected.working_directory) == ("make", "/src")
    assert rejected.reason == (
        "This tool is not available: the client runs no code and has no workspace. "
        "Use one of the client's own tools, or answer in text."
    )


def test_announced_calls_are_numbered_in_order_with_their_names() -> None:
    ex = exchange(["a", "b"])
    first = ex.feed(partial(agent.McpArgs(tool_name="a", tool_call_id="t1")))
    second = ex.feed(partial(agent.McpArgs(tool_name="b", tool_call_id="t2")))
    assert [(e.tool_call.index, e.tool_call.id, e.tool_call.name) for e in first + second] == [
        (0, "t1", "a"),
        (1, "t2", "b"),
    ]
    # The exec that follows an announced call carries its index and no second id or name.
    args = agent.McpArgs(tool_name="b", tool_call_id="t2")
    (event,) = ex.feed(exec_mcp(args, n=9))
    assert (event.tool_call.index, event.tool_call.id, event.tool_call.name) == (1, "", "")
