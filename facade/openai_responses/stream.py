"""Core's ChatEvents -> the Responses API's typed stream events (one response at a time).

Items are sequential, as OpenAI streams them: a new kind of output (reasoning, text, a tool
call) closes the open item with its `.done` events first. Every event carries a
`sequence_number`; the terminal event (`response.completed`/`incomplete`/`failed`) is made by
`terminal()`/`failed()` once the caller has stored the response.
"""

from __future__ import annotations

from typing import Any

from cursorgate.v1 import chat_pb2
from facade.openai_responses.convert import (
    INCOMPLETE,
    function_call_item,
    message_item,
    new_id,
    reasoning_item,
    usage_object,
)

Event = dict[str, Any]


class _Open:
    """The item being streamed: its index in `output`, id, and what it has gathered."""

    __slots__ = ("call_id", "id", "index", "kind", "name", "parts")

    def __init__(self, kind: str, index: int, item_id: str, call_id: str = "", name: str = "") -> None:
        self.kind = kind
        self.index = index
        self.id = item_id
        self.call_id = call_id
        self.name = name
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ResponseEvents:
    """Feed it ChatEvents; it returns the events to send. `snapshot` is the response so far."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.response = snapshot
        self.output: list[dict[str, Any]] = snapshot["output"]
        self._seq = 0
        self._open: _Open | None = None
        self._calls: dict[int, _Open] = {}  # core's tool-call index -> its item
        self.usage: chat_pb2.Usage | None = None
        self.finish = chat_pb2.FINISH_REASON_UNSPECIFIED

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def start(self) -> list[Event]:
        return [
            self._event("response.created", response=self.response),
            self._event("response.in_progress", response=self.response),
        ]

    def feed(self, event: chat_pb2.ChatEvent) -> list[Event]:
        kind = event.WhichOneof("event")
        if kind == "text":
            return self._text(event.text.text)
        if kind == "reasoning":
            return self._reasoning(event.reasoning.text)
        if kind == "tool_call":
            return self._tool_call(event.tool_call)
        if kind == "usage":
            self.usage = event.usage
        elif kind == "finish":
            self.finish = event.finish.reason
        return []  # an event kind newer than this facade: skip rather than fail

    # --- items ---

    def _switch(self, kind: str) -> tuple[list[Event], _Open | None]:
        """Closes the open item unless it is of `kind`; returns its events and what stays open."""
        current = self._open
        if current is not None and current.kind == kind:
            return [], current
        return self._close(), None

    def _add(self, item: _Open, placeholder: dict[str, Any]) -> Event:
        self._open = item
        self.output.append(placeholder)
        return self._event("response.output_item.added", output_index=item.index, item=placeholder)

    def _text(self, text: str) -> list[Event]:
        if not text:
            return []
        events, item = self._switch("message")
        if item is None:
            item = _Open("message", len(self.output), new_id("msg"))
            events.append(self._add(item, message_item(item.id, "", status="in_progress")))
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item.id,
                    output_index=item.index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            )
        item.parts.append(text)
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _reasoning(self, text: str) -> list[Event]:
        if not text:
            return []
        events, item = self._switch("reasoning")
        if item is None:
            item = _Open("reasoning", len(self.output), new_id("rs"))
            events.append(self._add(item, reasoning_item(item.id, "")))
            events.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item.id,
                    output_index=item.index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            )
        item.parts.append(text)
        events.append(
            self._event(
                "response.reasoning_summary_text.delta",
                item_id=item.id,
                output_index=item.index,
                summary_index=0,
                delta=text,
            )
        )
        return events

    def _tool_call(self, delta: chat_pb2.ToolCallDelta) -> list[Event]:
        events: list[Event] = []
        item = self._calls.get(delta.index)
        if item is None:
            events = self._close()
            item = _Open("function_call", len(self.output), new_id("fc"), delta.id, delta.name)
            self._calls[delta.index] = item
            placeholder = function_call_item(item.id, item.call_id, item.name, "", status="in_progress")
            events.append(self._add(item, placeholder))
        if delta.arguments:
            item.parts.append(delta.arguments)
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=item.index,
                    delta=delta.arguments,
                )
            )
        return events

    def _close(self) -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        where = {"item_id": item.id, "output_index": item.index}
        events: list[Event] = []
        if item.kind == "message":
            part = {"type": "output_text", "text": item.text, "annotations": [], "logprobs": []}
            done = message_item(item.id, item.text)
            events.append(
                self._event(
                    "response.output_text.done", **where, content_index=0, text=item.text, logprobs=[]
                )
            )
            events.append(self._event("response.content_part.done", **where, content_index=0, part=part))
        elif item.kind == "reasoning":
            part = {"type": "summary_text", "text": item.text}
            done = reasoning_item(item.id, item.text)
            events.append(
                self._event("response.reasoning_summary_text.done", **where, summary_index=0, text=item.text)
            )
            events.append(
                self._event("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
            )
        else:
            done = function_call_item(item.id, item.call_id, item.name, item.text)
            events.append(
                self._event(
                    "response.function_call_arguments.done", **where, name=item.name, arguments=item.text
                )
            )
        self.output[item.index] = done
        events.append(self._event("response.output_item.done", output_index=item.index, item=done))
        return events

    # --- the end ---

    def close(self) -> list[Event]:
        """The open item's closing events, once the answer is complete."""
        return self._close()

    def complete(self) -> dict[str, Any]:
        """The final response object (status completed or incomplete)."""
        reason = INCOMPLETE.get(self.finish)
        self.response["status"] = "incomplete" if reason else "completed"
        self.response["incomplete_details"] = {"reason": reason} if reason else None
        if self.usage is not None:
            self.response["usage"] = usage_object(self.usage)
        return self.response

    def terminal(self) -> Event:
        kind = "response.incomplete" if self.response["status"] == "incomplete" else "response.completed"
        return self._event(kind, response=self.response)

    def failed(self, error: dict[str, Any]) -> Event:
        self._open = None
        self.response["status"] = "failed"
        self.response["error"] = error
        return self._event("response.failed", response=self.response)
