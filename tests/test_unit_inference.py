"""The inference dialect in-process: bytes on the wire worked out by hand from the RunInference
field numbers (agent-protocol.md §9), frames -> events, usage, tool-call assembly, errors."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from google.protobuf.json_format import MessageToDict
from PIL import Image

from aiserver.v1 import errors_pb2
from aiserver.v1 import inference_pb2 as inf
from core.upstream.errors import Failure, UpstreamError
from core.upstream.images import ImageLoader
from core.upstream.inference import InferenceExchange
from core.upstream.inference.events import EventMapper
from core.upstream.inference.request import build, run_request, stream_request
from cursorgate.v1 import chat_pb2
from simulator import inference as sim
from simulator import script
from simulator.errors import cursor_error

Server = inf.RunInferenceServerMessage


def user(text: str) -> chat_pb2.Message:
    return chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text=text)])


def images() -> ImageLoader:
    return ImageLoader(1_000_000, 5.0)


# --- requests ---


def test_run_request_bytes() -> None:
    request = chat_pb2.ChatRequest(model="m", messages=[user("hi")])
    message = inf.RunInferenceClientMessage(run_request=run_request(request, "m", "c"))
    expected = bytes.fromhex(
        "0a17"  # RunInferenceClientMessage.run_request (1), 23 bytes
        "0a0163"  # conversation_id (1) "c"
        "1a030a016d"  # requested_model (3) { model_id (1) "m" }
        "2206"
        "0801"
        "12026869"  # routing_conversation (4) { role (1) USER, text (2) "hi" }
        "2a056167656e74"  # agent_mode (5) "agent"
    )
    assert message.SerializeToString() == expected


def test_model_config_bytes() -> None:
    sampling = chat_pb2.SamplingOptions(max_tokens=5, temperature=0.5, top_p=1.0, stop=["x"])
    request = chat_pb2.ChatRequest(model="m", messages=[user("hi")], sampling=sampling)
    body = asyncio.run(stream_request(request, images(), "c"))
    assert body.model_config.SerializeToString() == bytes.fromhex(
        "0805"  # max_tokens (1) 5
        "150000003f"  # temperature (2) float 0.5
        "1d0000803f"  # top_p (3) float 1.0
        "220178"  # stop_sequences (4) "x"
    )


def test_no_sampling_no_model_config() -> None:
    body = asyncio.run(stream_request(chat_pb2.ChatRequest(model="m", messages=[user("hi")]), images(), "c"))
    assert not body.HasField("model_config")
    assert [m.role for m in body.messages] == [inf.INFERENCE_MESSAGE_ROLE_USER]
    assert body.messages[0].text == "hi"


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_full_history() -> None:
    image = png(3, 2)
    call = chat_pb2.ToolCall(id="call_1", name="get_time", arguments='{"a":1}')
    request = chat_pb2.ChatRequest(
        model="m",
        messages=[
            chat_pb2.Message(role=chat_pb2.ROLE_SYSTEM, content=[chat_pb2.ContentPart(text="Be brief.")]),
            chat_pb2.Message(
                role=chat_pb2.ROLE_USER,
                content=[
                    chat_pb2.ContentPart(text="look"),
                    chat_pb2.ContentPart(image=chat_pb2.Image(data=image)),
                ],
            ),
            chat_pb2.Message(role=chat_pb2.ROLE_ASSISTANT, tool_calls=[call], reasoning="hmm"),
            chat_pb2.Message(
                role=chat_pb2.ROLE_TOOL, tool_call_id="call_1", content=[chat_pb2.ContentPart(text="ok")]
            ),
            chat_pb2.Message(
                role=chat_pb2.ROLE_ASSISTANT,
                tool_calls=[chat_pb2.ToolCall(id="call_2", name="get_time", arguments="{}")],
            ),
            user("and?"),
        ],
        tools=[chat_pb2.Tool(name="get_time", description="Time", parameters={"type": "object"})],
    )
    body = asyncio.run(stream_request(request, images(), "conv"))
    roles = [m.role for m in body.messages]
    S, U, A, T = (
        inf.INFERENCE_MESSAGE_ROLE_SYSTEM,
        inf.INFERENCE_MESSAGE_ROLE_USER,
        inf.INFERENCE_MESSAGE_ROLE_ASSISTANT,
        inf.INFERENCE_MESSAGE_ROLE_TOOL,
    )
    # The unanswered call_2 gets an error result before the next user message.
    assert roles == [S, U, A, T, A, T, U]
    assert body.messages[0].text == "Be brief."
    parts = body.messages[1].parts.parts
    assert parts[0].text.text == "look"
    assert parts[1].image.mime_type == "image/png"
    assert base64.b64decode(parts[1].image.data) == image
    assistant = body.messages[2]
    assert assistant.reasoning_parts[0].text == "hmm"
    (sent,) = assistant.tool_calls
    assert (sent.tool_call_id, sent.tool_name, sent.raw_tool_call_args) == ("call_1", "get_time", '{"a":1}')
    # args (3): a Struct {"a": 1.0}: fields entry { key "a", value { number_value (2) 1.0 } }.
    assert sent.args.SerializeToString() == bytes.fromhex("0a0e0a0161120911000000000000f03f")
    result = body.messages[3].tool_content.parts[0]
    assert (result.tool_call_id, result.tool_name, result.is_error) == ("call_1", "get_time", False)
    assert result.result.SerializeToString() == bytes.fromhex("1a026f6b")  # Value.string_value (3) "ok"
    missing = body.messages[5].tool_content.parts[0]
    assert missing.tool_call_id == "call_2" and missing.is_error
    (tool,) = body.tools
    assert MessageToDict(tool.parameters) == {"jsonSchema": {"type": "object"}}
    assert body.conversation_id == "conv"


def test_forced_tool_is_the_only_one_declared() -> None:
    request = chat_pb2.ChatRequest(
        model="m",
        messages=[user("go")],
        tools=[chat_pb2.Tool(name="a"), chat_pb2.Tool(name="b")],
        tool_choice=chat_pb2.ToolChoice(mode=chat_pb2.ToolChoice.MODE_FUNCTION, function_name="b"),
        parallel_tool_calls=False,
    )
    body = asyncio.run(stream_request(request, images(), "c"))
    assert [t.name for t in body.tools] == ["b"]
    system = body.messages[0]
    assert system.role == inf.INFERENCE_MESSAGE_ROLE_SYSTEM
    assert "You must call the tool `b` in this turn." in system.text
    assert "Call at most one tool in this turn." in system.text


def test_build_pairs_run_and_invocation() -> None:
    run, invoke = asyncio.run(
        build(chat_pb2.ChatRequest(model="gpt-5.2", messages=[user("x")]), images(), model="wire")
    )
    assert run.run_request.requested_model.model_id == "wire"
    assert run.run_request.conversation_id == invoke.invoke_model.request.conversation_id
    assert invoke.invoke_model.invocation_id


# --- frames -> events ---


def exchange(max_calls: int | None = None) -> InferenceExchange:
    run, invoke = asyncio.run(
        build(chat_pb2.ChatRequest(model="m", messages=[user("x")]), images(), model="m")
    )
    return InferenceExchange(run, invoke, EventMapper(max_calls))


def frame(hex_bytes: str) -> Server:
    return Server.FromString(bytes.fromhex(hex_bytes))


TEXT_HI = (
    "1a0b"  # RunInferenceServerMessage.invocation_response (3), 11 bytes
    "0a0169"  # invocation_id (1) "i"
    "1206"
    "0a04"
    "0a024869"  # response (2) { text_part (1) { text (1) "Hi" } }
)


def test_text_part_bytes_to_event() -> None:
    assert exchange().feed(frame(TEXT_HI)) == [chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text="Hi"))]


def test_golden_sequence() -> None:
    ex = exchange()
    assert ex.opening()[0].WhichOneof("message") == "run_request"
    assert ex.feed(frame("0a00")) == []  # heartbeat (1)
    assert ex.feed(frame("1200")) == []  # run_ready (2): invoke_model goes out
    assert [m.WhichOneof("message") for m in ex.outbox] == ["invoke_model"]
    ex.outbox.clear()
    thinking = frame("1a0b0a016912064a040a026868")  # thinking_part (9) { text "hh" }
    assert ex.feed(thinking) == [chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text="hh"))]
    assert ex.feed(frame(TEXT_HI))[0].text.text == "Hi"
    # usage (3) { prompt_tokens 10, completion_tokens 5 }
    assert ex.feed(frame("1a0b0a016912061a04080a1005")) == []
    # extended_usage (5) { input 10, output 5, cache_read 4, cache_write 2 }
    assert ex.feed(frame("1a0f0a0169120a2a08080a100518042002")) == []
    assert not ex.done
    events = ex.feed(frame("22030a0169"))  # invocation_end (4) { invocation_id "i" }
    (event,) = events
    usage = event.usage
    counts = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.estimated)
    assert counts == (10, 5, 15, False)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (4, 2)
    assert ex.done and [m.WhichOneof("message") for m in ex.outbox] == ["finish_run"]
    assert ex.finish() == []


def test_unknown_parts_are_skipped_and_counted() -> None:
    ex = exchange()
    # image_descriptions (10), not declared by cursorgate: an empty field 10 in the response.
    assert ex.feed(frame("1a070a016912025200")) == []
    # A server message kind from the future: field 9.
    assert ex.feed(frame("4a00")) == []
    assert ex.skipped == 2


def tool_part(call_id: str, args: str, complete: bool, index: int, name: str = "f") -> Server:
    part = inf.InferenceToolCallStreamPart(
        tool_call_id=call_id, tool_name=name, args=args, is_complete=complete, tool_index=index
    )
    return Server(
        invocation_response=inf.RunInferenceInvocationResponse(
            invocation_id="i", response=inf.InferenceStreamResponse(tool_call_part=part)
        )
    )


def test_tool_call_part_bytes() -> None:
    hand = bytes.fromhex(
        "0a0174"  # tool_call_id (1) "t"
        "120166"  # tool_name (2) "f"
        "1a027b7d"  # args (3) "{}"
        "2001"  # is_complete (4) true
        "2800"  # tool_index (5) 0, present (optional)
    )
    assert (
        tool_part("t", "{}", True, 0).invocation_response.response.tool_call_part.SerializeToString() == hand
    )


def test_tool_call_fragments_assemble() -> None:
    ex = exchange()
    events = []
    for part in (
        tool_part("t1", '{"ci', False, 0, "weather"),
        tool_part("t2", "", False, 1, "time"),
        tool_part("t1", 'ty": "Paris"}', True, 0, "weather"),
        tool_part("t2", "", True, 1, "time"),
    ):
        events += [e.tool_call for e in ex.feed(part)]
    assert [(d.index, d.id, d.name) for d in events if d.id] == [(0, "t1", "weather"), (1, "t2", "time")]
    joined = {0: "", 1: ""}
    for d in events:
        joined[d.index] += d.arguments
    assert joined == {0: '{"city": "Paris"}', 1: "{}"}


def test_invalid_arguments_are_never_passed_on_as_finished() -> None:
    ex = exchange()
    ex.feed(tool_part("t1", '{"city":', False, 0))
    with pytest.raises(UpstreamError) as caught:
        ex.feed(tool_part("t1", "", True, 0))
    assert caught.value.failure is Failure.PROTOCOL


def test_incomplete_call_closed_at_finish() -> None:
    ex = exchange()
    ex.feed(tool_part("t1", "", False, 0))
    ex.feed(frame("22030a0169"))
    (event,) = ex.finish()
    assert (event.tool_call.index, event.tool_call.arguments) == (0, "{}")


def test_single_call_when_parallel_off() -> None:
    ex = exchange(max_calls=1)
    assert ex.feed(tool_part("t1", "{}", True, 0))
    assert ex.feed(tool_part("t2", "{}", True, 1)) == []


# --- errors ---


def end_with_error(code: int, message: str, error: int, title: str) -> Server:
    details = errors_pb2.ErrorDetails(error=error, details=errors_pb2.CustomErrorDetails(title=title))  # type: ignore[arg-type]
    detail = inf.RunInferenceErrorDetail(type="aiserver.v1.ErrorDetails", value=details.SerializeToString())
    error_msg = inf.RunInferenceInvocationError(code=code, message=message, details=[detail])
    return Server(invocation_end=inf.RunInferenceInvocationEnd(invocation_id="i", error=error_msg))


@pytest.mark.parametrize(
    ("code", "error", "title", "failure"),
    [
        (8, errors_pb2.ErrorDetails.ERROR_RATE_LIMITED, "Too many requests", Failure.RATE_LIMITED),
        (
            8,
            errors_pb2.ErrorDetails.ERROR_GPT_4_VISION_PREVIEW_RATE_LIMIT,
            "Update Required",
            Failure.OUTDATED_CLIENT,
        ),
        (8, errors_pb2.ErrorDetails.ERROR_UNSUPPORTED_REGION, "Model not available", Failure.REGION_BLOCKED),
        (16, errors_pb2.ErrorDetails.ERROR_NOT_LOGGED_IN, "Not logged in", Failure.AUTH),
        (3, errors_pb2.ErrorDetails.ERROR_BAD_MODEL_NAME, "Unknown model", Failure.BAD_MODEL),
    ],
)
def test_invocation_end_error_is_classified(code: int, error: int, title: str, failure: Failure) -> None:
    with pytest.raises(UpstreamError) as caught:
        exchange().feed(end_with_error(code, title, error, title))
    assert caught.value.failure is failure


def test_invocation_end_error_without_details_uses_the_code() -> None:
    end = Server(
        invocation_end=inf.RunInferenceInvocationEnd(
            invocation_id="i", error=inf.RunInferenceInvocationError(code=14, message="try later")
        )
    )
    with pytest.raises(UpstreamError) as caught:
        exchange().feed(end)
    assert caught.value.failure is Failure.UNAVAILABLE


@pytest.mark.parametrize(
    ("error_type", "failure"),
    [
        (inf.INFERENCE_STREAM_ERROR_TYPE_RATE_LIMIT, Failure.RATE_LIMITED),
        (inf.INFERENCE_STREAM_ERROR_TYPE_OVERLOADED, Failure.UNAVAILABLE),
        (inf.INFERENCE_STREAM_ERROR_TYPE_INPUT_TOKEN_LIMIT, Failure.BAD_REQUEST),
        (inf.INFERENCE_STREAM_ERROR_TYPE_UNKNOWN, Failure.OTHER),
    ],
)
def test_error_part_is_classified(error_type: int, failure: Failure) -> None:
    part = inf.InferenceStreamError(message="provider said no", error_type=error_type)  # type: ignore[arg-type]
    frame_ = Server(
        invocation_response=inf.RunInferenceInvocationResponse(
            invocation_id="i", response=inf.InferenceStreamResponse(error=part)
        )
    )
    with pytest.raises(UpstreamError) as caught:
        exchange().feed(frame_)
    assert caught.value.failure is failure


def test_stream_ended_without_invocation_end_is_a_protocol_failure() -> None:
    ex = exchange()
    ex.feed(frame("1200"))
    with pytest.raises(UpstreamError) as caught:
        ex.finish()
    assert caught.value.failure is Failure.PROTOCOL


def test_no_client_heartbeat() -> None:
    assert exchange().heartbeat() is None


# --- the simulator's wire, read by the gateway's mapper ---


@pytest.mark.parametrize(
    ("kind", "failure"),
    [
        ("rate_limited", Failure.RATE_LIMITED),
        ("region", Failure.REGION_BLOCKED),
        ("max_mode", Failure.MAX_MODE_REQUIRED),
        ("update_required", Failure.OUTDATED_CLIENT),
    ],
)
def test_simulated_inband_error_reads_back(kind: str, failure: Failure) -> None:
    end = sim.inband_error("i", cursor_error(kind))
    assert end.invocation_end.error.details[0].type == "aiserver.v1.ErrorDetails"
    with pytest.raises(UpstreamError) as caught:
        exchange().feed(Server.FromString(end.SerializeToString()))
    assert caught.value.failure is failure


@pytest.mark.parametrize("streamed", [True, False])
def test_simulated_call_parts_reassemble(streamed: bool) -> None:
    args = '{"city": "Paris", "unit": "celsius"}'
    call = script.ToolCall("toolu_x", "weather", args, 0, streamed)
    parts = sim.render("i", call)
    assert len(parts) == (3 if streamed else 1)
    ex = exchange()
    deltas = [e.tool_call for p in parts for e in ex.feed(p)]
    assert deltas[0].id == "toolu_x" and deltas[0].name == "weather"
    assert "".join(d.arguments for d in deltas) == args


# --- the mapper's usage and closing rules, with counts written out ---


def usage_part(**counts: int) -> inf.InferenceStreamResponse:
    return inf.InferenceStreamResponse(usage=inf.InferenceUsageInfo(**counts))


def extended_part(**counts: int) -> inf.InferenceStreamResponse:
    return inf.InferenceStreamResponse(extended_usage=inf.InferenceExtendedUsageInfo(**counts))


def reported(mapper: EventMapper) -> tuple[int, int, int, int, int, bool]:
    (event,) = mapper.usage()
    u = event.usage
    return (
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        u.estimated,
    )


def test_no_usage_reported_means_no_usage_event() -> None:
    assert EventMapper().usage() == []


def test_basic_usage_keeps_cursors_total() -> None:
    mapper = EventMapper()
    mapper.feed(usage_part(prompt_tokens=10, completion_tokens=5, total_tokens=20))
    assert reported(mapper) == (10, 5, 20, 0, 0, False)
    assert mapper.usage() == []  # reported once


def test_basic_usage_without_a_total_adds_up() -> None:
    mapper = EventMapper()
    mapper.feed(usage_part(prompt_tokens=10, completion_tokens=5))
    assert reported(mapper) == (10, 5, 15, 0, 0, False)


def test_extended_usage_alone() -> None:
    mapper = EventMapper()
    mapper.feed(extended_part(input_tokens=30, output_tokens=7, cache_read_tokens=4, cache_write_tokens=2))
    assert reported(mapper) == (30, 7, 37, 4, 2, False)


def test_basic_counts_win_and_extended_fills_the_zeros() -> None:
    mapper = EventMapper()
    mapper.feed(usage_part(prompt_tokens=12, completion_tokens=0))
    mapper.feed(extended_part(input_tokens=30, output_tokens=7, cache_read_tokens=1))
    assert reported(mapper) == (12, 7, 19, 1, 0, False)


def test_finish_closes_only_what_needs_closing() -> None:
    mapper = EventMapper()
    mapper.feed(
        inf.InferenceStreamResponse(
            tool_call_part=tool_part("t1", '{"a": 1}', False, 0).invocation_response.response.tool_call_part
        )
    )
    mapper.feed(
        inf.InferenceStreamResponse(
            tool_call_part=tool_part("t2", "", False, 1).invocation_response.response.tool_call_part
        )
    )
    (closing,) = mapper.finish()
    assert (closing.tool_call.index, closing.tool_call.arguments, closing.tool_call.id) == (1, "{}", "")
    assert mapper.finish() == []  # both are complete now
    late = tool_part("t2", '{"x": 1}', True, 1).invocation_response.response.tool_call_part
    assert mapper.feed(inf.InferenceStreamResponse(tool_call_part=late)) == []


@pytest.mark.parametrize(
    ("code", "message", "failure"),
    [
        # The provider's code and message are read as one text, joined by a space.
        ("update", "required", Failure.OUTDATED_CLIENT),
        ("", "prompt too large", Failure.TOO_LARGE),
        ("too large", "", Failure.TOO_LARGE),
        ("", "", Failure.OTHER),
    ],
)
def test_error_part_words(code: str, message: str, failure: Failure) -> None:
    part = inf.InferenceStreamError(
        code=code, message=message, error_type=inf.INFERENCE_STREAM_ERROR_TYPE_UNKNOWN
    )
    with pytest.raises(UpstreamError) as caught:
        EventMapper().feed(inf.InferenceStreamResponse(error=part))
    assert caught.value.failure is failure
