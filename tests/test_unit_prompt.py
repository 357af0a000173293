"""What every dialect derives from a request (core/upstream/prompt.py): a message's text, the
tools Cursor is told about, the system context with the tool-choice instructions.
The instruction sentences are written out as the model must read them."""

from __future__ import annotations

import pytest

from core.upstream.prompt import declared_tools, system_context, text_of
from cursorgate.v1 import chat_pb2

Mode = chat_pb2.ToolChoice.Mode
NO_TOOLS = "Do not call any tool in this turn; answer in text."
REQUIRE_TOOL = "You must call at least one of the available tools in this turn."
ONE_TOOL = "Call at most one tool in this turn."


def request(
    *,
    system: tuple[str, ...] = (),
    developer: tuple[str, ...] = (),
    tools: tuple[str, ...] = (),
    mode: int = Mode.MODE_AUTO,
    function: str = "",
    parallel: bool | None = None,
) -> chat_pb2.ChatRequest:
    req = chat_pb2.ChatRequest(model="m")
    for text in system:
        req.messages.add(role=chat_pb2.ROLE_SYSTEM).content.add(text=text)
    req.messages.add(role=chat_pb2.ROLE_USER).content.add(text="user words")
    for text in developer:
        req.messages.add(role=chat_pb2.ROLE_DEVELOPER).content.add(text=text)
    for name in tools:
        req.tools.add(name=name)
    req.tool_choice.mode = mode  # type: ignore[assignment]
    req.tool_choice.function_name = function
    if parallel is not None:
        req.parallel_tool_calls = parallel
    return req


def test_text_of_joins_text_parts_and_skips_images() -> None:
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER)
    message.content.add(text="one")
    message.content.add(image=chat_pb2.Image(url="data:,"))
    message.content.add(text="two")
    assert text_of(message) == "one\ntwo"
    assert text_of(chat_pb2.Message()) == ""


@pytest.mark.parametrize(
    ("mode", "function", "declared"),
    [
        (Mode.MODE_AUTO, "", ["a", "b"]),
        (Mode.MODE_REQUIRED, "", ["a", "b"]),
        (Mode.MODE_NONE, "", []),
        (Mode.MODE_FUNCTION, "b", ["b"]),
        (Mode.MODE_FUNCTION, "zzz", []),
    ],
)
def test_declared_tools(mode: int, function: str, declared: list[str]) -> None:
    tools = declared_tools(request(tools=("a", "b"), mode=mode, function=function))
    assert [t.name for t in tools] == declared


@pytest.mark.parametrize(
    ("req", "context"),
    [
        (request(), ""),
        (request(system=("Be brief.",), developer=("Use French.",)), "Be brief.\n\nUse French."),
        (request(system=("Be brief.",), tools=("a",), mode=Mode.MODE_NONE), f"Be brief.\n\n{NO_TOOLS}"),
        # tool_choice none without tools: nothing to forbid.
        (request(mode=Mode.MODE_NONE), ""),
        (request(tools=("a",), mode=Mode.MODE_REQUIRED), REQUIRE_TOOL),
        (
            request(tools=("a", "get_weather"), mode=Mode.MODE_FUNCTION, function="get_weather"),
            "You must call the tool `get_weather` in this turn.",
        ),
        (request(tools=("a",), parallel=False), ONE_TOOL),
        (request(tools=("a",), parallel=True), ""),
        (request(tools=("a",), mode=Mode.MODE_REQUIRED, parallel=False), f"{REQUIRE_TOOL}\n\n{ONE_TOOL}"),
        # parallel_tool_calls=false says nothing when no tool is declared.
        (request(parallel=False), ""),
        (request(system=("", "Second.")), "Second."),
    ],
)
def test_system_context(req: chat_pb2.ChatRequest, context: str) -> None:
    assert system_context(req, declared_tools(req)) == context
