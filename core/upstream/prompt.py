"""What every dialect derives the same way from a gateway ChatRequest: a message's text, the tools
Cursor is told about, and the system context (system and developer text, then the instructions
that stand in for tool_choice and parallel_tool_calls, which no Cursor RPC has a switch for)."""

from __future__ import annotations

from core.upstream import instructions
from cursorgate.v1 import chat_pb2

Role = chat_pb2.Role
Mode = chat_pb2.ToolChoice.Mode


def text_of(message: chat_pb2.Message) -> str:
    return "\n".join(part.text for part in message.content if part.HasField("text"))


def declared_tools(request: chat_pb2.ChatRequest) -> list[chat_pb2.Tool]:
    """The tools Cursor is told about: none for tool_choice=none, only the named one when forced."""
    choice = request.tool_choice
    if choice.mode == Mode.MODE_NONE:
        return []
    if choice.mode == Mode.MODE_FUNCTION:
        return [t for t in request.tools if t.name == choice.function_name]
    return list(request.tools)


def system_context(request: chat_pb2.ChatRequest, tools: list[chat_pb2.Tool]) -> str:
    parts = [text_of(m) for m in request.messages if m.role in (Role.ROLE_SYSTEM, Role.ROLE_DEVELOPER)]
    choice = request.tool_choice
    if request.tools and choice.mode == Mode.MODE_NONE:
        parts.append(instructions.NO_TOOLS)
    elif choice.mode == Mode.MODE_FUNCTION:
        parts.append(instructions.FORCE_TOOL.format(name=choice.function_name))
    elif choice.mode == Mode.MODE_REQUIRED:
        parts.append(instructions.REQUIRE_TOOL)
    if tools and request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        parts.append(instructions.ONE_TOOL)
    return "\n\n".join(p for p in parts if p)
