"""Cursor's response frames -> gateway ChatEvents (text, reasoning, tool-call deltas)."""

from __future__ import annotations

from dataclasses import dataclass

from aiserver.v1 import chat_pb2 as cursor
from aiserver.v1 import tools_pb2
from core.upstream.legacy.request import TOOL_SERVER, openai_call_id
from cursorgate.v1 import chat_pb2


@dataclass(slots=True)
class _Call:
    index: int
    sent_args: int = 0


class EventMapper:
    """Stateful per stream: numbers tool calls in order of appearance and turns Cursor's
    cumulative streamed arguments into OpenAI-style fragments."""

    def __init__(self, max_calls: int | None = None) -> None:
        self._calls: dict[str, _Call] = {}
        self._max_calls = max_calls

    def feed(self, frame: cursor.StreamUnifiedChatResponseWithTools) -> list[chat_pb2.ChatEvent]:
        kind = frame.WhichOneof("response")
        if kind == "client_side_tool_v2_call":
            return self._tool_call(frame.client_side_tool_v2_call)
        if kind != "stream_unified_chat_response":
            return []
        response = frame.stream_unified_chat_response
        if not response.HasField("thinking"):  # the hot path: a text frame
            text = response.text
            return [chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=text))] if text else []
        events: list[chat_pb2.ChatEvent] = []
        if response.thinking.text:
            events.append(chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text=response.thinking.text)))
        if response.text:
            events.append(chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=response.text)))
        return events

    def _tool_call(self, call: tools_pb2.ClientSideToolV2Call) -> list[chat_pb2.ChatEvent]:
        key = call.tool_call_id
        state = self._calls.get(key)
        delta = chat_pb2.ToolCallDelta()
        if state is None:
            if self._max_calls is not None and len(self._calls) >= self._max_calls:
                return []  # parallel_tool_calls=false: only the first call is passed on
            state = self._calls[key] = _Call(index=len(self._calls))
            delta.id = openai_call_id(call.tool_call_id, call.model_call_id)
            delta.name = _tool_name(call)
        delta.index = state.index
        # Streamed frames repeat the whole prefix; a whole frame carries everything at once.
        args = call.raw_args
        if len(args) > state.sent_args:
            delta.arguments = args[state.sent_args :]
            state.sent_args = len(args)
        if not delta.id and not delta.arguments:
            return []
        return [chat_pb2.ChatEvent(tool_call=delta)]

    def finish_calls(self) -> list[chat_pb2.ChatEvent]:
        """Calls that ended with no arguments get "{}" so arguments are always a JSON object."""
        return [
            chat_pb2.ChatEvent(tool_call=chat_pb2.ToolCallDelta(index=state.index, arguments="{}"))
            for state in self._calls.values()
            if state.sent_args == 0
        ]


def _tool_name(call: tools_pb2.ClientSideToolV2Call) -> str:
    tools = call.mcp_params.tools
    if tools:
        tool = tools[0]
        return tool.name if tool.server_name in ("", TOOL_SERVER) else f"mcp__{tool.server_name}__{tool.name}"
    return call.name
