"""Cursor's response frames -> gateway ChatEvents (text, reasoning, tool-call deltas)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiserver.v1 import chat_pb2 as cursor
from aiserver.v1 import tools_pb2
from core.upstream.errors import Failure, UpstreamError
from core.upstream.legacy.request import TOOL_SERVER, openai_call_id
from cursorgate.v1 import chat_pb2


@dataclass(slots=True)
class _Call:
    index: int
    # The arguments as last sent (cumulative while is_streaming) and the last copy that was a
    # complete JSON object.
    latest: str = ""
    valid: str | None = None
    done: bool = False


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


class EventMapper:
    """Stateful per stream: numbers tool calls in order of appearance and passes on each call's
    arguments once, whole and valid, when the call is complete.

    Arguments are not streamed piecewise: Cursor was seen to send a compact copy of the whole
    arguments first and then restart with the growing spaced JSON, so a prefix already passed on
    can turn out wrong (issue 9). A call is complete when a frame says `is_last_message`, when a
    frame is not `is_streaming` (it carries everything), or when the stream ends; the arguments
    passed on are the last complete JSON object Cursor sent for the call."""

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
        if state.done:
            return []  # a late repeat of a call already passed on whole
        delta.index = state.index
        args = call.raw_args
        if args:
            state.latest = args
            if _json_object(args):
                state.valid = args
        events = [chat_pb2.ChatEvent(tool_call=delta)] if delta.id else []
        if not call.is_streaming or call.is_last_message:
            events += self._complete(state)
        return events

    def _complete(self, state: _Call) -> list[chat_pb2.ChatEvent]:
        state.done = True
        args = state.valid if state.valid is not None else ("{}" if not state.latest else None)
        if args is None:
            raise UpstreamError(
                Failure.PROTOCOL, "Cursor sent tool-call arguments that are not a JSON object."
            )
        return [chat_pb2.ChatEvent(tool_call=chat_pb2.ToolCallDelta(index=state.index, arguments=args))]

    def finish_calls(self) -> list[chat_pb2.ChatEvent]:
        """The stream ended: calls not yet complete are passed on with what they have."""
        events: list[chat_pb2.ChatEvent] = []
        for state in self._calls.values():
            if not state.done:
                events += self._complete(state)
        return events


def _tool_name(call: tools_pb2.ClientSideToolV2Call) -> str:
    tools = call.mcp_params.tools
    if tools:
        tool = tools[0]
        return tool.name if tool.server_name in ("", TOOL_SERVER) else f"mcp__{tool.server_name}__{tool.name}"
    return call.name
