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
from facade.response_format import to_response_format
from facade.schemas import ChatCompletionRequest, ChatMessage, TextPart

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


def new_completion_id() -> str:
    return f"chatcmpl-{os.urandom(12).hex()}"


# --- OpenAI request -> ChatRequest --------------------------------------------------------


def _message(message: ChatMessage) -> chat_pb2.Message:
    out = chat_pb2.Message(role=ROLES[message.role])
    content = message.content
    if isinstance(content, str):
        out.content.add(text=content)
    elif content is not None:
        for part in content:
            if isinstance(part, TextPart):
                out.content.add(text=part.text)
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
    request = chat_pb2.ChatRequest(model=body.model, request_id=request_id, user=body.user or "")
    request.messages.extend(_message(message) for message in body.messages)
    for tool in body.tools or ():
        fn = tool.function
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
    if body.parallel_tool_calls is not None:
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
    response: chat_pb2.ChatResponse, *, completion_id: str, created: int, model: str
) -> dict[str, Any]:
    """A `chat.completion` object from core's aggregated answer."""
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI sends null content when the turn is only tool calls.
        "content": response.content if response.content or not response.tool_calls else None,
        "refusal": None,
    }
    if response.reasoning:
        message["reasoning_content"] = response.reasoning
    if response.tool_calls:
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
                "finish_reason": FINISH_REASONS.get(response.finish_reason, "stop"),
            }
        ],
    }
    if response.HasField("usage"):
        completion["usage"] = usage_dict(response.usage)
    return completion


class ChunkStream:
    """Turns one completion's ChatEvents into `chat.completion.chunk` dicts.

    Holds the little state OpenAI's chunk order needs: the role-only first chunk, and the
    usage event (core sends it before `finish`; OpenAI sends usage last, with no choices).
    """

    __slots__ = ("_content_frame", "_usage", "completion_id", "created", "finished", "include_usage", "model")

    def __init__(self, *, completion_id: str, model: str, include_usage: bool, created: int | None = None):
        self.completion_id = completion_id
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time()) if created is None else created
        self.finished = False
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

    def first(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def translate(self, event: chat_pb2.ChatEvent) -> list[dict[str, Any]]:
        kind = event.WhichOneof("event")
        if kind == "text":
            return [self._chunk({"content": event.text.text})]
        if kind == "reasoning":
            return [self._chunk({"reasoning_content": event.reasoning.text})]
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
            chunks = [self._chunk({}, FINISH_REASONS.get(event.finish.reason, "stop"))]
            if self.include_usage and self._usage is not None:
                chunks.append(self._usage_chunk(self._usage))
            return chunks
        return []  # an event kind newer than this facade: skip rather than fail


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
