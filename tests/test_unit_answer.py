"""The answer shaper: stop sequences, max_tokens, usage and finish reasons."""

from __future__ import annotations

from core.chat.answer import AnswerShaper, estimate_tokens, prompt_chars
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


# --- written-out expectations for each decision (issue 16) ------------------------------------


def reasoning(t: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text=t))


def tool_call(name: str, arguments: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(
        tool_call=chat_pb2.ToolCallDelta(index=0, id="c1", name=name, arguments=arguments)
    )


def texts(events: list[chat_pb2.ChatEvent]) -> list[str]:
    return [e.text.text for e in events if e.HasField("text")]


def closing(shaper: AnswerShaper) -> tuple[chat_pb2.Usage, chat_pb2.Finish]:
    *_, usage, finish = shaper.finish()
    return usage.usage, finish.finish


def test_estimate_tokens_rounds_up() -> None:
    assert [estimate_tokens(n) for n in (0, 1, 3, 4, 5, 8, 9)] == [0, 1, 1, 1, 2, 2, 3]


def test_prompt_estimate_counts_messages_parts_calls_and_tools() -> None:
    req = chat_pb2.ChatRequest(model="m")
    req.messages.add(role=chat_pb2.ROLE_USER).content.add(text="hello")  # 16 + 5
    assistant = req.messages.add(role=chat_pb2.ROLE_ASSISTANT)  # 16 + 1 + 7
    assistant.tool_calls.add(id="c", name="f", arguments='{"a":1}')
    req.messages.add(role=chat_pb2.ROLE_USER).content.add(image=chat_pb2.Image(url="data:,"))  # 16 + 340
    req.tools.add(name="get", description="Get it")  # 3 + 6 + 0 (empty schema prints as "")
    assert prompt_chars(req) == 21 + 24 + 356 + 9
    usage, _ = closing(AnswerShaper(req))
    assert usage.prompt_tokens == 103  # ceil(410 / 4)
    assert (usage.completion_tokens, usage.total_tokens, usage.estimated) == (0, 103, True)


def test_estimated_usage_counts_text_tools_and_reasoning() -> None:
    shaper = AnswerShaper(request())  # one empty user message: 16 chars, 4 tokens
    assert shaper.feed(reasoning("thinking")) == [reasoning("thinking")]  # 8 chars -> 2 tokens
    assert texts(shaper.feed(text("abcdefghij"))) == ["abcdefghij"]  # 10 chars
    assert shaper.feed(tool_call("f", "{}")) == [tool_call("f", "{}")]  # 3 chars
    usage, finish = closing(shaper)
    assert usage.prompt_tokens == 4
    assert usage.reasoning_tokens == 2
    assert usage.completion_tokens == 4 + 2  # ceil(13 / 4) + reasoning
    assert usage.total_tokens == 10
    assert finish.reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    assert finish.served_model == "m" and finish.stop_sequence == ""


def test_reasoning_counts_toward_max_tokens() -> None:
    shaper = AnswerShaper(request(max_tokens=3))  # room for 12 characters
    assert shaper.feed(reasoning("12345678")) == [reasoning("12345678")]
    assert texts(shaper.feed(text("abcdefgh"))) == ["abcd"]
    assert shaper.done
    _, finish = closing(shaper)
    assert finish.reason == chat_pb2.FINISH_REASON_LENGTH


def test_reasoning_over_max_tokens_leaves_no_room_for_text() -> None:
    shaper = AnswerShaper(request(max_tokens=1))
    shaper.feed(reasoning("0123456789"))
    assert shaper.feed(text("abc")) == []
    assert shaper.done


def test_text_that_exactly_fills_max_tokens_ends_the_answer() -> None:
    shaper = AnswerShaper(request(max_tokens=2))
    assert texts(shaper.feed(text("abcdefg"))) == ["abcdefg"]
    assert not shaper.done
    assert texts(shaper.feed(text("h"))) == ["h"]
    assert shaper.done
    assert shaper.feed(text("more")) == []
    usage, finish = closing(shaper)
    assert finish.reason == chat_pb2.FINISH_REASON_LENGTH and usage.completion_tokens == 2


def test_tool_call_after_length_keeps_length() -> None:
    shaper = AnswerShaper(request(max_tokens=1))
    shaper.feed(tool_call("f", "{}"))
    shaper.feed(text("abcdef"))
    _, finish = closing(shaper)
    assert finish.reason == chat_pb2.FINISH_REASON_LENGTH


def test_only_a_possible_stop_prefix_is_held_back() -> None:
    shaper = AnswerShaper(request(stop=["STOP"]))
    assert texts(shaper.feed(text("abcST"))) == ["abc"]  # "ST" may start "STOP"
    assert texts(shaper.feed(text("x"))) == ["STx"]
    assert texts(shaper.feed(text("ySTO"))) == ["y"]  # at most len("STOP") - 1 held
    assert texts(shaper.feed(text("P!"))) == []
    _, finish = closing(shaper)
    assert finish.reason == chat_pb2.FINISH_REASON_STOP and finish.stop_sequence == "STOP"


def test_held_back_length_follows_the_longest_stop() -> None:
    shaper = AnswerShaper(request(stop=["##", "END"]))
    assert texts(shaper.feed(text("a#"))) == ["a"]
    assert texts(shaper.feed(text("b"))) == ["#b"]
    assert texts(shaper.feed(text("xEN"))) == ["x"]
    assert texts(shaper.finish()) == ["EN"]


def test_text_without_any_stop_prefix_is_not_held() -> None:
    shaper = AnswerShaper(request(stop=["STOP"]))
    assert texts(shaper.feed(text("hello"))) == ["hello"]
    assert texts(shaper.finish()) == []


def test_the_earliest_stop_sequence_wins() -> None:
    shaper = AnswerShaper(request(stop=["b", "a"]))
    assert texts(shaper.feed(text("xaby"))) == ["x"]
    _, finish = closing(shaper)
    assert finish.stop_sequence == "a" and finish.reason == chat_pb2.FINISH_REASON_STOP


def test_held_text_is_dropped_when_a_stop_ended_the_answer() -> None:
    shaper = AnswerShaper(request(stop=["END", "QQ"]))
    assert texts(shaper.feed(text("one E"))) == ["one "]
    assert texts(shaper.feed(text("NDQ"))) == []
    assert texts(shaper.finish()) == []


def test_held_text_released_at_the_end_still_counts_toward_max_tokens() -> None:
    shaper = AnswerShaper(request(stop=["STOP"], max_tokens=1))
    assert texts(shaper.feed(text("abS"))) == ["ab"]
    assert texts(shaper.feed(text("TO"))) == []
    out = shaper.finish()
    assert texts(out) == ["ST"]  # room for 4 characters, "ab" took 2: "STO" is cut to "ST"
    assert out[-1].finish.reason == chat_pb2.FINISH_REASON_LENGTH


def test_empty_stop_strings_are_ignored_and_text_passes_through() -> None:
    shaper = AnswerShaper(request(stop=["", ""]))
    event = text("as is")
    assert shaper.feed(event)[0] is event
    assert shaper.feed(text("")) == []
    usage, finish = closing(shaper)
    assert usage.completion_tokens == 2 and finish.reason == chat_pb2.FINISH_REASON_STOP


def test_usage_and_finish_from_upstream_are_not_passed_on() -> None:
    shaper = AnswerShaper(request())
    upstream_finish = chat_pb2.ChatEvent(finish=chat_pb2.Finish(reason=chat_pb2.FINISH_REASON_LENGTH))
    assert shaper.feed(upstream_finish) == []
    assert not shaper.done
    _, finish = closing(shaper)
    assert finish.reason == chat_pb2.FINISH_REASON_STOP


def test_reported_usage_keeps_its_total_and_the_last_report_wins() -> None:
    shaper = AnswerShaper(request())
    shaper.feed(chat_pb2.ChatEvent(usage=chat_pb2.Usage(prompt_tokens=1, completion_tokens=1)))
    shaper.feed(
        chat_pb2.ChatEvent(usage=chat_pb2.Usage(prompt_tokens=3, completion_tokens=4, total_tokens=9))
    )
    usage, _ = closing(shaper)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.estimated) == (
        3,
        4,
        9,
        False,
    )
    # The report itself is not changed by finishing.
    assert shaper.reported is not None and shaper.reported.estimated is False


def test_nothing_is_accepted_after_a_stop() -> None:
    shaper = AnswerShaper(request(stop=["X"]))
    shaper.feed(text("aXb"))
    assert shaper.done
    assert shaper.feed(reasoning("late")) == [] and shaper.feed(tool_call("f", "{}")) == []
    usage, finish = closing(shaper)
    assert finish.reason == chat_pb2.FINISH_REASON_STOP and usage.reasoning_tokens == 0


def test_a_tools_schema_counts_as_its_printed_form() -> None:
    bare = chat_pb2.ChatRequest(model="m")
    bare.tools.add(name="get")
    typed = chat_pb2.ChatRequest(model="m")
    typed.tools.add(name="get").parameters.update({"type": "object"})
    # 'fields {\n  key: "type"\n  value {\n    string_value: "object"\n  }\n}\n': 66 characters.
    assert prompt_chars(typed) - prompt_chars(bare) == 66


def test_a_tie_between_stop_sequences_goes_to_the_first_listed() -> None:
    shaper = AnswerShaper(request(stop=["ab", "a"]))
    assert texts(shaper.feed(text("xab"))) == ["x"]
    _, finish = closing(shaper)
    assert finish.stop_sequence == "ab"


def test_the_first_occurrence_of_a_stop_sequence_cuts() -> None:
    shaper = AnswerShaper(request(stop=["X"]))
    assert texts(shaper.feed(text("aXbX"))) == ["a"]


def test_reasoning_and_tool_characters_accumulate_across_events() -> None:
    shaper = AnswerShaper(request())
    for piece in ("abcd", "efgh", "ijkl"):
        shaper.feed(reasoning(piece))  # 12 chars -> 3 tokens
    shaper.feed(tool_call("fn", "{}"))  # 4 chars
    shaper.feed(tool_call("", '{"k":1}'))  # 7 chars, a later delta of the same call
    usage, _ = closing(shaper)
    assert usage.reasoning_tokens == 3
    assert usage.completion_tokens == 3 + 3  # ceil(11 / 4) + reasoning
