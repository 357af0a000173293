"""What a chat request asks for, whatever the dialect that carried it: each simulated RPC turns
its request into a `ChatView`, the script plans an answer from the view alone, and the request
log records the view, so tests read one shape for every dialect."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ViewImage:
    width: int = 0
    height: int = 0
    # Base64 of the image bytes, as Cursor received them.
    data: str = ""
    mime_type: str = ""


@dataclass
class ViewFile:
    """A file Cursor received as a file (not inlined text): RunInference file parts, agent
    documents."""

    filename: str = ""
    mime_type: str = ""
    # Base64 of the file bytes, as Cursor received them.
    data: str = ""
    size: int = 0


@dataclass
class ViewToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class ViewToolResult:
    id: str
    name: str
    content: str
    # The caller marked the result as a failure (MCP isError, Anthropic is_error).
    is_error: bool = False


@dataclass
class ViewMessage:
    role: str  # "user", "assistant", "tool"
    text: str = ""
    images: list[ViewImage] = field(default_factory=list)
    # Files carried as files; a text file the gateway inlined is part of `text`.
    files: list[ViewFile] = field(default_factory=list)
    tool_calls: list[ViewToolCall] = field(default_factory=list)
    tool_results: list[ViewToolResult] = field(default_factory=list)
    # An assistant message's reasoning, as the caller sent it back.
    reasoning: str = ""


@dataclass
class ViewTool:
    name: str
    description: str = ""
    schema: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatView:
    dialect: str
    model: str
    messages: list[ViewMessage] = field(default_factory=list)
    # System and gateway instructions, joined.
    system: str = ""
    tools: list[ViewTool] = field(default_factory=list)
    # The request asked for thinking (a thinking level, or a thinking model variant).
    thinking: bool = False
    max_mode: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""

    def answered_results(self) -> list[ViewToolResult]:
        """Tool results after the last user message with text: the turn being answered."""
        results: list[ViewToolResult] = []
        for message in reversed(self.messages):
            if message.role == "user" and message.text.strip():
                break
            results.extend(message.tool_results)
        return results

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
