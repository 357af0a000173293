"""The seam between OpenAI JSON and `cursorgate.v1`: requests in, chunks and completions out.

Pure functions and one small per-stream state holder; no I/O, so it is unit-tested directly.
Outgoing objects are plain dicts, serialized with orjson by the caller.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from google.protobuf import struct_pb2

from cursorgate.v1 import chat_pb2, models_pb2
from facade.errors import OpenAIError
from facade.files import openai_file
from facade.openai_chat.schemas import ChatCompletionRequest, ChatMessage, FilePart, TextPart
from facade.response_format import to_response_format
from facade.sse import frame

ROLES: dict[str, chat_pb2.Role] = {
    "system": chat_pb2.ROLE_SYSTEM,
    "developer": chat_pb2.ROLE_DEVELOPER,
    "user": chat_pb2.ROLE_USER,
    "assistant": chat_pb2.ROLE_ASSISTANT,
    "tool": chat_pb2.ROLE_TOOL,
}

TOOL_CHOICE_MODES: dict[str, chat_pb2.ToolChoice.Mode] = {
    "auto": chat_pb2.ToolChoice.MODE_AUTO,
    "none": chat_pb2.ToolChoice.MODE_NONE,
    "required": chat_pb2.ToolChoice.MODE_REQUIRED,
}

REASONING_EFFORTS: dict[str, chat_pb2.ReasoningEffort] = {
    "none": chat_pb2.REASONING_EFFORT_NONE,
    "minimal": chat_pb2.REASONING_EFFORT_MINIMAL,
    "low": chat_pb2.REASONING_EFFORT_LOW,
    "medium": chat_pb2.REASONING_EFFORT_MEDIUM,
    "high": chat_pb2.REASONING_EFFORT_HIGH,
    "xhigh": chat_pb2.REASONING_EFFORT_XHIGH,
}

# UNSPECIFIED only comes from a core that broke the contract; "stop" is the harmless reading.
FINISH_REASONS: dict[int, str] = {
    chat_pb2.FINISH_REASON_UNSPECIFIED: "stop",
    chat_pb2.FINISH_REASON_STOP: "stop",
    chat_pb2.FINISH_REASON_LENGTH: "length",
    chat_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    chat_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}


DONE = b"data: [DONE]\n\n"
# CURSORGATE_REASONING_INLINE_THINK: reasoning inlined in the content, as open models print it,
# for clients that read nothing else (LangChain ChatOpenAI, the AI SDK's OpenAI chat model).
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>\n\n"


def new_completion_id() -> str:
    return f"chatcmpl-{os.urandom(12).hex()}"


# --- OpenAI request -> ChatRequest --------------------------------------------------------


def _legacy_message(message: ChatMessage) -> chat_pb2.Message:
    """The deprecated API's calls and results carry no call id, and Cursor accepts tool results
    only for ids of its own: so they travel as text, which every model reads."""
    text = message.content if isinstance(message.content, str) else ""
    if isinstance(message.content, list):
        text = "\n".join(part.text for part in message.content if isinstance(part, TextPart))
    if message.role == "function":
        return chat_pb2.Message(
            role=chat_pb2.ROLE_USER,
            content=[chat_pb2.ContentPart(text=f"Result of function {message.name or ''}:\n{text}")],
        )
    call = message.function_call
    assert call is not None
    said = f"{text}\n\n" if text else ""
    return chat_pb2.Message(
        role=chat_pb2.ROLE_ASSISTANT,
        content=[
            chat_pb2.ContentPart(text=f"{said}Called function {call.name} with arguments {call.arguments}")
        ],
    )


def _message(message: ChatMessage, index: int) -> chat_pb2.Message:
    if message.role == "function" or message.function_call is not None:
        return _legacy_message(message)
    out = chat_pb2.Message(role=ROLES[message.role])
    content = message.content
    if isinstance(content, str):
        out.content.add(text=content)
    elif content is not None:
        for j, part in enumerate(content):
            if isinstance(part, TextPart):
                out.content.add(text=part.text)
            elif isinstance(part, FilePart):
                file = part.file
                out.content.add(
                    file=openai_file(
                        f"messages[{index}].content[{j}].file",
                        file_data=file.file_data,
                        file_id=file.file_id,
                        filename=file.filename,
                    )
                )
            else:
                image = chat_pb2.Image(url=part.image_url.url, detail=part.image_url.detail or "")
                out.content.add(image=image)
    if message.name:
        out.name = message.name
    for call in message.tool_calls or ():
        out.tool_calls.add(id=call.id, name=call.function.name, arguments=call.function.arguments)
    if message.tool_call_id:
        out.tool_call_id = message.tool_call_id
    if message.reasoning_content:
        out.reasoning = message.reasoning_content
    return out


def to_chat_request(body: ChatCompletionRequest, request_id: str) -> chat_pb2.ChatRequest:
    request = chat_pb2.ChatRequest(
        model=body.model,
        request_id=request_id,
        user=body.user or "",
        affinity_key=body.prompt_cache_key or body.user or "",
    )
    request.messages.extend(_message(message, i) for i, message in enumerate(body.messages))
    functions = [tool.function for tool in body.tools] if body.tools is not None else body.functions
    for fn in functions or ():
        out = request.tools.add(name=fn.name, description=fn.description or "", strict=bool(fn.strict))
        if fn.parameters is not None:
            parameters = struct_pb2.Struct()
            parameters.update(fn.parameters)
            out.parameters.CopyFrom(parameters)
    choice = body.tool_choice
    if isinstance(choice, str):
        request.tool_choice.mode = TOOL_CHOICE_MODES[choice]
    elif choice is not None:
        request.tool_choice.mode = chat_pb2.ToolChoice.MODE_FUNCTION
        request.tool_choice.function_name = choice.function.name
    elif body.legacy_functions and body.function_call is not None:
        if isinstance(body.function_call, str):
            request.tool_choice.mode = TOOL_CHOICE_MODES[body.function_call]
        else:
            request.tool_choice.mode = chat_pb2.ToolChoice.MODE_FUNCTION
            request.tool_choice.function_name = body.function_call.name
    if body.legacy_functions:
        request.parallel_tool_calls = False  # the deprecated API has one call per turn
    elif body.parallel_tool_calls is not None:
        request.parallel_tool_calls = body.parallel_tool_calls
    if body.reasoning_effort is not None:
        request.reasoning_effort = REASONING_EFFORTS[body.reasoning_effort]
    if body.max_mode is not None:
        request.max_mode = body.max_mode
    fmt = body.response_format
    if fmt is not None:
        spec = fmt.json_schema
        if fmt.type == "json_schema" and spec is not None:
            request.response_format.CopyFrom(
                to_response_format(
                    "json_schema",
                    name=spec.name,
                    description=spec.description,
                    schema=spec.schema_,
                    strict=spec.strict,
                )
            )
        else:
            request.response_format.CopyFrom(to_response_format(fmt.type))

    sampling = request.sampling
    if body.temperature is not None:
        sampling.temperature = body.temperature
    if body.top_p is not None:
        sampling.top_p = body.top_p
    # max_tokens is OpenAI's deprecated spelling; the newer one wins when both are sent.
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    if max_tokens is not None:
        sampling.max_tokens = max_tokens
    if isinstance(body.stop, str):
        sampling.stop.append(body.stop)
    elif body.stop:
        sampling.stop.extend(body.stop)
    if body.seed is not None:
        sampling.seed = body.seed
    if body.presence_penalty is not None:
        sampling.presence_penalty = body.presence_penalty
    if body.frequency_penalty is not None:
        sampling.frequency_penalty = body.frequency_penalty
    return request


# --- ChatResponse / ChatEvent -> OpenAI JSON ------------------------------------------------


def usage_dict(usage: chat_pb2.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }


def to_completion(
    response: chat_pb2.ChatResponse,
    *,
    completion_id: str,
    created: int,
    model: str,
    inline_think: bool = False,
    legacy_functions: bool = False,
) -> dict[str, Any]:
    """A `chat.completion` object from core's aggregated answer (with `legacy_functions`, in
    the deprecated function-calling API's shape: one `function_call`)."""
    content = response.content
    if inline_think and response.reasoning:
        content = f"{THINK_OPEN}{response.reasoning}{THINK_CLOSE}{content}"
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI sends null content when the turn is only tool calls.
        "content": content if content or not response.tool_calls else None,
        "refusal": None,
    }
    if response.reasoning and not inline_think:
        # `reasoning_content` (DeepSeek's name, read by most OpenAI-compatible clients) and
        # `reasoning` (read by the AI SDK's openai-compatible provider, OpenRouter, vLLM).
        message["reasoning_content"] = message["reasoning"] = response.reasoning
    finish_reason = FINISH_REASONS.get(response.finish_reason, "stop")
    if response.tool_calls and legacy_functions:
        first = response.tool_calls[0]
        message["function_call"] = {"name": first.name, "arguments": first.arguments}
        finish_reason = "function_call" if finish_reason == "tool_calls" else finish_reason
    elif response.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in response.tool_calls
        ]
    completion: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": response.model or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }
    if response.HasField("usage"):
        completion["usage"] = usage_dict(response.usage)
    return completion


class ChunkStream:
    """Turns one completion's ChatEvents into `chat.completion.chunk` dicts, and as a
    `facade.sse.StreamTranslator` into their SSE frames.

    Holds the little state OpenAI's chunk order needs: the role-only first chunk, and the
    usage event (core sends it before `finish`; OpenAI sends usage last, with no choices).
    """

    __slots__ = (
        "_content_frame",
        "_thinking",
        "_usage",
        "completion_id",
        "created",
        "finished",
        "include_usage",
        "inline_think",
        "legacy_functions",
        "model",
    )

    def __init__(
        self,
        *,
        completion_id: str,
        model: str,
        include_usage: bool,
        created: int | None = None,
        inline_think: bool = False,
        legacy_functions: bool = False,
    ):
        self.completion_id = completion_id
        self.legacy_functions = legacy_functions
        self.model = model
        self.include_usage = include_usage
        self.inline_think = inline_think
        self.created = int(time.time()) if created is None else created
        self.finished = False
        self._thinking = False  # inline_think: a <think> is open in the content
        self._usage: chat_pb2.Usage | None = None
        self._content_frame: tuple[bytes, bytes] | None = None

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            chunk["usage"] = None  # OpenAI marks every non-final chunk so when usage is asked for
        return chunk

    def _usage_chunk(self, usage: chat_pb2.Usage) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_dict(usage),
        }

    def content_frame(self, text: str) -> bytes:
        """The SSE frame of a content chunk: the same bytes as `data: ` + orjson of
        `self._chunk({"content": text})`, but only the text is encoded per chunk; the rest is
        encoded once per stream (this runs for every token)."""
        parts = self._content_frame
        if parts is None:
            # A key inside an encoded string has escaped quotes, so this marker is unique.
            head, tail = orjson.dumps(self._chunk({"content": ""})).split(b'"content":""')
            parts = self._content_frame = (b"data: " + head + b'"content":', tail + b"\n\n")
        return parts[0] + orjson.dumps(text) + parts[1]

    def first(self, first_event: chat_pb2.ChatEvent | None = None) -> dict[str, Any]:
        """The role chunk. Its content is "" as OpenAI's when text follows, else null: an empty
        string before a tool call makes clients such as the AI SDK open an empty text part."""
        text_follows = first_event is None or first_event.WhichOneof("event") == "text"
        return self._chunk({"role": "assistant", "content": "" if text_follows else None})

    def _close_think(self) -> list[dict[str, Any]]:
        if not self._thinking:
            return []
        self._thinking = False
        return [self._chunk({"content": THINK_CLOSE})]

    def translate(self, event: chat_pb2.ChatEvent) -> list[dict[str, Any]]:
        kind = event.WhichOneof("event")
        if kind == "text":
            text = event.text.text
            if self._thinking:
                self._thinking = False
                text = THINK_CLOSE + text
            return [self._chunk({"content": text})]
        if kind == "reasoning":
            text = event.reasoning.text
            if self.inline_think:
                opening = "" if self._thinking else THINK_OPEN
                self._thinking = True
                return [self._chunk({"content": opening + text})]
            # Both names, as in to_completion.
            return [self._chunk({"reasoning_content": text, "reasoning": text})]
        if self._thinking and kind in ("tool_call", "finish"):
            return self._close_think() + self.translate(event)
        if kind == "tool_call" and self.legacy_functions:
            delta = event.tool_call
            if delta.index != 0:
                return []  # one call per turn in the deprecated API (core was asked for one)
            legacy: dict[str, str] = {"name": delta.name} if delta.name else {}
            legacy["arguments"] = delta.arguments
            return [self._chunk({"function_call": legacy})]
        if kind == "tool_call":
            delta = event.tool_call
            call: dict[str, Any] = {"index": delta.index}
            if delta.id:
                call["id"] = delta.id
                call["type"] = "function"
            function: dict[str, str] = {}
            if delta.name:
                function["name"] = delta.name
            function["arguments"] = delta.arguments
            call["function"] = function
            return [self._chunk({"tool_calls": [call]})]
        if kind == "usage":
            if self.finished:
                return [self._usage_chunk(event.usage)] if self.include_usage else []
            self._usage = event.usage
            return []
        if kind == "finish":
            self.finished = True
            reason = FINISH_REASONS.get(event.finish.reason, "stop")
            if self.legacy_functions and reason == "tool_calls":
                reason = "function_call"
            chunks = [self._chunk({}, reason)]
            if self.include_usage and self._usage is not None:
                chunks.append(self._usage_chunk(self._usage))
            return chunks
        return []  # an event kind newer than this facade: skip rather than fail

    # --- facade.sse.StreamTranslator ---

    def start(self, first: chat_pb2.ChatEvent) -> bytes:
        return frame(self.first(first))

    def text(self, text: str) -> bytes:
        if self._thinking:
            self._thinking = False
            text = THINK_CLOSE + text
        return self.content_frame(text)

    def event(self, event: chat_pb2.ChatEvent) -> bytes:
        return b"".join(frame(chunk) for chunk in self.translate(event))

    def end(self) -> bytes:
        return DONE

    def error(self, error: OpenAIError) -> bytes:
        # Headers are gone: the failure travels in-band, in OpenAI's error schema.
        return frame(error.body()) + DONE


# --- models ---------------------------------------------------------------------------------


def model_object(model: models_pb2.Model) -> dict[str, Any]:
    """OpenAI's four fields, then what the accounts report (README, "Model listing")."""
    out: dict[str, Any] = {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by or "cursor",
        "display_name": model.display_name or model.id,
        "context_window": model.context_window or None,
        "max_mode_context_window": model.max_mode_context_window or None,
        "supports_thinking": model.supports_thinking,
        "supports_images": model.supports_images,
        "supports_tools": model.supports_tools,
        "supports_max_mode": model.supports_max_mode,
        "max_mode_only": model.max_mode_only,
        "is_alias": model.is_alias,
    }
    if model.is_alias:
        out["alias_of"] = model.alias_of
    return out


def model_list(response: models_pb2.ListModelsResponse) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in response.models]}
