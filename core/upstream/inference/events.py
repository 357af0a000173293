"""RunInference's response parts -> gateway ChatEvents, and its in-band errors -> UpstreamError."""

from __future__ import annotations

import json
from dataclasses import dataclass

from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError
from protobuf.wkt import Any as ConnectAny

from aiserver.v1 import inference_pb2 as inf
from core.upstream.errors import Failure, UpstreamError, classify
from cursorgate.v1 import chat_pb2

# invocation_end.error.code is a gRPC status number; connectrpc's Code lists them in that order.
_CODE_BY_NUMBER = dict(enumerate(ConnectCode, start=1))

_T = inf.InferenceStreamErrorType
# An in-band model error's type, as the Connect code Cursor would give it, so that the shared
# classifier (codes + words) decides.
_CODE_BY_TYPE = {
    _T.INFERENCE_STREAM_ERROR_TYPE_INPUT_TOKEN_LIMIT: ConnectCode.INVALID_ARGUMENT,
    _T.INFERENCE_STREAM_ERROR_TYPE_OUTPUT_TOKEN_LIMIT: ConnectCode.INVALID_ARGUMENT,
    _T.INFERENCE_STREAM_ERROR_TYPE_RATE_LIMIT: ConnectCode.RESOURCE_EXHAUSTED,
    _T.INFERENCE_STREAM_ERROR_TYPE_AUTHENTICATION: ConnectCode.UNAUTHENTICATED,
    _T.INFERENCE_STREAM_ERROR_TYPE_PERMISSION: ConnectCode.PERMISSION_DENIED,
    _T.INFERENCE_STREAM_ERROR_TYPE_OVERLOADED: ConnectCode.UNAVAILABLE,
    _T.INFERENCE_STREAM_ERROR_TYPE_CONTENT_FILTER: ConnectCode.INVALID_ARGUMENT,
}


def invocation_error(error: inf.RunInferenceInvocationError) -> UpstreamError:
    """invocation_end's error (a Connect error carried in a message) through the shared classifier."""
    details = [
        ConnectAny(type_url=f"type.googleapis.com/{d.type}", value=d.value) for d in error.details if d.type
    ]
    code = _CODE_BY_NUMBER.get(error.code, ConnectCode.UNKNOWN)
    return classify(ConnectError(code, error.message or "invocation failed", details=details))


def stream_error(error: inf.InferenceStreamError) -> UpstreamError:
    """An in-band error part (the model provider's failure, relayed)."""
    code = _CODE_BY_TYPE.get(error.error_type, ConnectCode.UNKNOWN)
    return classify(
        ConnectError(code, " ".join(t for t in (error.code, error.message) if t) or "model error")
    )


@dataclass(slots=True)
class _Call:
    index: int
    args: str = ""
    complete: bool = False


class EventMapper:
    """Stateful per invocation: numbers tool calls in order of appearance, passes their argument
    fragments on, and holds the usage parts until the invocation ends (one Usage event)."""

    def __init__(self, max_calls: int | None = None) -> None:
        self._calls: dict[str, _Call] = {}
        self._max_calls = max_calls
        self._usage: inf.InferenceUsageInfo | None = None
        self._extended: inf.InferenceExtendedUsageInfo | None = None
        # Frames and parts this gateway does not understand (newer Cursor): skipped, counted.
        self.skipped = 0

    def feed(self, response: inf.InferenceStreamResponse) -> list[chat_pb2.ChatEvent]:
        kind = response.WhichOneof("response")
        if kind == "text_part":  # the hot path
            text = response.text_part.text
            return [chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=text))] if text else []
        if kind == "thinking_part":
            text = response.thinking_part.text
            return [chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text=text))] if text else []
        if kind == "tool_call_part":
            return self._tool_call(response.tool_call_part)
        if kind == "usage":
            self._usage = response.usage
        elif kind == "extended_usage":
            self._extended = response.extended_usage
        elif kind == "error":
            raise stream_error(response.error)
        elif kind is None:
            self.skipped += 1
        # response_info, provider_metadata, invocation_id: nothing for the caller.
        return []

    def _tool_call(self, part: inf.InferenceToolCallStreamPart) -> list[chat_pb2.ChatEvent]:
        key = part.tool_call_id or f"#{part.tool_index}"
        state = self._calls.get(key)
        delta = chat_pb2.ToolCallDelta()
        if state is None:
            if self._max_calls is not None and len(self._calls) >= self._max_calls:
                return []  # parallel_tool_calls=false: only the first call is passed on
            state = self._calls[key] = _Call(index=len(self._calls))
            delta.id = part.tool_call_id or f"call_{part.tool_index}"
            delta.name = part.tool_name
        if state.complete:
            return []
        delta.index = state.index
        if part.args:
            delta.arguments = part.args
            state.args += part.args
        if part.is_complete:
            state.complete = True
            tail = self._close(state)
            delta.arguments += tail
        if not delta.id and not delta.arguments:
            return []
        return [chat_pb2.ChatEvent(tool_call=delta)]

    @staticmethod
    def _close(state: _Call) -> str:
        """What a call's arguments still need to be a JSON object: "{}" for none; a call whose
        fragments do not add up to JSON is Cursor's fault, never passed on as finished."""
        if not state.args.strip():
            state.args = "{}"
            return "{}"
        try:
            json.loads(state.args)
        except ValueError:
            raise UpstreamError(
                Failure.PROTOCOL, "Cursor sent tool-call arguments that are not valid JSON."
            ) from None
        return ""

    def usage(self) -> list[chat_pb2.ChatEvent]:
        """The model's reported counts as one Usage event (none when Cursor reported none)."""
        basic, extended = self._usage, self._extended
        if basic is None and extended is None:
            return []
        prompt = basic.prompt_tokens if basic is not None else 0
        completion = basic.completion_tokens if basic is not None else 0
        total = basic.total_tokens if basic is not None and basic.HasField("total_tokens") else 0
        usage = chat_pb2.Usage(estimated=False)
        if extended is not None:
            prompt = prompt or extended.input_tokens
            completion = completion or extended.output_tokens
            usage.cache_read_tokens = extended.cache_read_tokens
            usage.cache_write_tokens = extended.cache_write_tokens
        usage.prompt_tokens = prompt
        usage.completion_tokens = completion
        usage.total_tokens = total or prompt + completion
        self._usage = self._extended = None
        return [chat_pb2.ChatEvent(usage=usage)]

    def finish(self) -> list[chat_pb2.ChatEvent]:
        """Calls Cursor never marked complete: closed the same way (valid JSON or an error)."""
        events = []
        for state in self._calls.values():
            if not state.complete:
                state.complete = True
                tail = self._close(state)
                if tail:
                    events.append(
                        chat_pb2.ChatEvent(
                            tool_call=chat_pb2.ToolCallDelta(index=state.index, arguments=tail)
                        )
                    )
        return events
