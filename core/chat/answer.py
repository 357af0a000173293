"""Shapes an upstream event stream into the gateway's: stop sequences, max_tokens, usage, finish."""

from __future__ import annotations

import math

from cursorgate.v1 import chat_pb2

FinishReason = chat_pb2.FinishReason

# The legacy RPC reports no token counts; estimate like OpenAI's rule of thumb. Dialects that
# report counts (RunInference, agent Run) send a usage event, which replaces the estimate.
CHARS_PER_TOKEN = 4


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN) if chars else 0


def _part_chars(part: chat_pb2.ContentPart) -> int:
    if part.HasField("text"):
        return len(part.text)
    if part.HasField("file"):
        # A file's bytes, as characters (a text file is inlined; a fetched one is unknown here).
        file = part.file
        return len(file.data) if file.HasField("data") else len(file.url) * 3 // 4
    return 85 * CHARS_PER_TOKEN  # an image: OpenAI's flat low-detail cost


def prompt_chars(request: chat_pb2.ChatRequest) -> int:
    total = 0
    for message in request.messages:
        total += 4 * CHARS_PER_TOKEN  # per-message overhead, as OpenAI counts it
        for part in message.content:
            total += _part_chars(part)
        for call in message.tool_calls:
            total += len(call.name) + len(call.arguments)
    for tool in request.tools:
        total += len(tool.name) + len(tool.description) + len(str(tool.parameters))
    return total


class AnswerShaper:
    """Feed it upstream deltas; it returns what to send on, and tells when to stop early."""

    def __init__(self, request: chat_pb2.ChatRequest) -> None:
        sampling = request.sampling
        self.stops = [s for s in sampling.stop if s]
        self.max_tokens = sampling.max_tokens if sampling.HasField("max_tokens") else None
        self.prompt_chars = prompt_chars(request)
        # The model that serves (core has resolved aliases and variants into request.model).
        self.served_model = request.model
        self.text_chars = 0
        self.reasoning_chars = 0
        self.tool_chars = 0
        self.saw_tool_call = False
        self.finished: chat_pb2.FinishReason | None = None
        # What Cursor reported, when it did (the last report wins).
        self.reported: chat_pb2.Usage | None = None
        self.stop_sequence = ""  # the stop sequence that ended the answer, if one did
        self._held = ""  # text held back because it might start a stop sequence
        # Neither stop sequences nor max_tokens: text events pass through as they are.
        self._passthrough = not self.stops and self.max_tokens is None

    @property
    def done(self) -> bool:
        return self.finished is not None

    def feed(self, event: chat_pb2.ChatEvent) -> list[chat_pb2.ChatEvent]:
        if self.done:
            return []
        kind = event.WhichOneof("event")
        if kind == "text":
            if self._passthrough:  # the hot path: no new message per chunk
                size = len(event.text.text)
                self.text_chars += size
                return [event] if size else []
            return self._text(event.text.text)
        if kind == "reasoning":
            self.reasoning_chars += len(event.reasoning.text)
            return [event]
        if kind == "tool_call":
            self.saw_tool_call = True
            self.tool_chars += len(event.tool_call.name) + len(event.tool_call.arguments)
            return [event]
        if kind == "usage":
            self.reported = event.usage
        return []  # usage and finish go out once, from finish()

    def _text(self, text: str) -> list[chat_pb2.ChatEvent]:
        text = self._held + text
        self._held = ""
        if self.stops:
            found = [(i, s) for s in self.stops if (i := text.find(s)) >= 0]
            if found:
                cut, self.stop_sequence = min(found, key=lambda hit: hit[0])
                self.finished = FinishReason.FINISH_REASON_STOP
                return self._emit(text[:cut])
            keep = max(len(s) for s in self.stops) - 1
            keep = next(
                (
                    k
                    for k in range(min(keep, len(text)), 0, -1)
                    if any(s.startswith(text[-k:]) for s in self.stops)
                ),
                0,
            )
            if keep:
                text, self._held = text[:-keep], text[-keep:]
        return self._emit(text)

    def _emit(self, text: str) -> list[chat_pb2.ChatEvent]:
        if self.max_tokens is not None:
            room = self.max_tokens * CHARS_PER_TOKEN - self.text_chars - self.reasoning_chars
            if len(text) >= room:
                text = text[: max(room, 0)]
                self.finished = FinishReason.FINISH_REASON_LENGTH
        self.text_chars += len(text)
        return [chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=text))] if text else []

    def finish(self) -> list[chat_pb2.ChatEvent]:
        """The closing events: pending text, usage, finish."""
        out: list[chat_pb2.ChatEvent] = []
        if self._held and not self.done:
            held, self._held = self._held, ""
            out += self._emit(held)
        reason = self.finished
        if reason is None:
            reason = (
                FinishReason.FINISH_REASON_TOOL_CALLS
                if self.saw_tool_call
                else FinishReason.FINISH_REASON_STOP
            )
        out.append(chat_pb2.ChatEvent(usage=self.usage()))
        finish = chat_pb2.Finish(
            reason=reason, served_model=self.served_model, stop_sequence=self.stop_sequence
        )
        out.append(chat_pb2.ChatEvent(finish=finish))
        return out

    def usage(self) -> chat_pb2.Usage:
        if self.reported is not None:
            reported = chat_pb2.Usage()
            reported.CopyFrom(self.reported)
            reported.estimated = False
            if not reported.total_tokens:
                reported.total_tokens = reported.prompt_tokens + reported.completion_tokens
            return reported
        prompt = estimate_tokens(self.prompt_chars)
        reasoning = estimate_tokens(self.reasoning_chars)
        completion = estimate_tokens(self.text_chars + self.tool_chars) + reasoning
        return chat_pb2.Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            reasoning_tokens=reasoning,
            estimated=True,
        )
