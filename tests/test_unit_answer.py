"""The answer shaper: stop sequences, max_tokens, usage and finish reasons."""

from __future__ import annotations

from core.answer import AnswerShaper
from cursorgate.v1 import chat_pb2


def request(stop: list[str] | None = None, max_tokens: int | None = None) -> chat_pb2.ChatRequest:
    req = chat_pb2.ChatRequest(model="m", messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER)])
    req.sampling.stop.extend(stop or [])
    if max_tokens is not None:
        req.sampling.max_tokens = max_tokens
    return req


def text(t: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=t))


def run(shaper: AnswerShaper, pieces: list[str]) -> tuple[str, list[chat_pb2.ChatEvent]]:
    out: list[chat_pb2.ChatEvent] = []
    for piece in pieces:
        out += shaper.feed(text(piece))
        if shaper.done:
            break
    out += shaper.finish()
    joined = "".join(e.text.text for e in out if e.HasField("text"))
    return joined, out


def test_stop_sequence_split_across_chunks() -> None:
    joined, out = run(AnswerShaper(request(stop=["END"])), ["hello E", "N", "D and more"])
    assert joined == "hello "
    assert out[-1].finish.reason == chat_pb2.FINISH_REASON_STOP


def test_held_back_prefix_is_released_when_no_stop_follows() -> None:
    joined, _ = run(AnswerShaper(request(stop=["END"])), ["abc E", "x", "yz EN"])
    assert joined == "abc Exyz EN"


def test_max_tokens_truncates_with_length() -> None:
    joined, out = run(AnswerShaper(request(max_tokens=2)), ["abcdef", "ghijkl"])
    assert joined == "abcdefgh"
    assert out[-1].finish.reason == chat_pb2.FINISH_REASON_LENGTH
    assert out[-2].usage.completion_tokens == 2


def test_tool_calls_finish_reason_and_usage() -> None:
    shaper = AnswerShaper(request())
    shaper.feed(
        chat_pb2.ChatEvent(tool_call=chat_pb2.ToolCallDelta(index=0, id="c", name="f", arguments="{}"))
    )
    out = shaper.finish()
    assert out[-1].finish.reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    assert out[-2].usage.estimated


def test_reported_usage_replaces_the_estimate() -> None:
    shaper = AnswerShaper(request())
    shaper.feed(text("x" * 400))  # would estimate 100 completion tokens
    reported = chat_pb2.Usage(prompt_tokens=11, completion_tokens=7, reasoning_tokens=2, cache_read_tokens=5)
    assert shaper.feed(chat_pb2.ChatEvent(usage=reported)) == []  # not passed on mid-stream
    usage = next(e.usage for e in shaper.finish() if e.HasField("usage"))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)
    assert (usage.reasoning_tokens, usage.cache_read_tokens, usage.estimated) == (2, 5, False)


def test_estimate_without_a_report_is_marked() -> None:
    shaper = AnswerShaper(request())
    shaper.feed(text("x" * 400))
    usage = next(e.usage for e in shaper.finish() if e.HasField("usage"))
    assert usage.estimated is True and usage.completion_tokens == 100
