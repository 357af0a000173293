"""The seam between Anthropic Messages JSON and `cursorgate.v1`: requests in, Message objects
and stream events out.

Pure functions and one per-stream state holder (`MessageStream`); no I/O, so it is
unit-tested directly. Outgoing objects are plain dicts, serialized with orjson.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import orjson
from google.protobuf import struct_pb2

from cursorgate.v1 import chat_pb2
from facade.anthropic_messages.errors import error_body, error_type
from facade.anthropic_messages.schemas import (
    Base64Source,
    ContentSource,
    CountTokensRequest,
    DocumentBlock,
    FileSource,
    ImageBlock,
    Message,
    MessagesRequest,
    RedactedThinkingBlock,
    TextBlock,
    TextSource,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from facade.anthropic_messages.shapes import (
    BlockDelta,
    ContentBlock,
    MessageDelta,
    MessageObject,
    Usage,
)
from facade.errors import OpenAIError
from facade.sse import named_frame

logger = logging.getLogger("facade.anthropic")

ROLES: dict[str, chat_pb2.Role] = {
    "system": chat_pb2.ROLE_SYSTEM,
    "user": chat_pb2.ROLE_USER,
    "assistant": chat_pb2.ROLE_ASSISTANT,
}

# Anthropic's effort levels -> core's; "max" is the top level, as OpenAI's "xhigh".
EFFORTS: dict[str, chat_pb2.ReasoningEffort] = {
    "low": chat_pb2.REASONING_EFFORT_LOW,
    "medium": chat_pb2.REASONING_EFFORT_MEDIUM,
    "high": chat_pb2.REASONING_EFFORT_HIGH,
    "max": chat_pb2.REASONING_EFFORT_XHIGH,
}
# thinking.budget_tokens -> effort: Anthropic's minimum budget is 1,024 and its docs call
# 16k+ "complex tasks"; the bounds between are ours.
BUDGET_EFFORTS: tuple[tuple[int, chat_pb2.ReasoningEffort], ...] = (
    (4_096, chat_pb2.REASONING_EFFORT_LOW),
    (16_384, chat_pb2.REASONING_EFFORT_MEDIUM),
)

STOP_REASONS: dict[int, str] = {
    chat_pb2.FINISH_REASON_UNSPECIFIED: "end_turn",
    chat_pb2.FINISH_REASON_STOP: "end_turn",
    chat_pb2.FINISH_REASON_LENGTH: "max_tokens",
    chat_pb2.FINISH_REASON_TOOL_CALLS: "tool_use",
    chat_pb2.FINISH_REASON_CONTENT_FILTER: "refusal",
}


def new_message_id() -> str:
    return f"msg_{os.urandom(12).hex()}"


def stop_reason(reason: int, stop_sequence: str) -> str:
    return "stop_sequence" if stop_sequence else STOP_REASONS.get(reason, "end_turn")


def signature(thinking: str) -> str:
    """An opaque signature for a thinking block. Clients must send it back unchanged; the
    gateway accepts any (it cannot verify Anthropic's), so it only has to be stable."""
    return _seal(hashlib.sha256(thinking.encode()))


def _seal(digest: Any) -> str:
    """The signature of a (streamed: incrementally fed) sha256 of the thinking text."""
    return "cg1" + str(digest.hexdigest())[:32]


# --- Anthropic request -> ChatRequest -------------------------------------------------------


def invalid(message: str, param: str) -> OpenAIError:
    return OpenAIError(400, message, param=param)


def _image(block: ImageBlock) -> chat_pb2.Image:
    source = block.source
    if source.type == "base64":
        # A data: URL: core decodes and checks it, as it does OpenAI's image_url parts.
        return chat_pb2.Image(url=f"data:{source.media_type};base64,{source.data}")
    return chat_pb2.Image(url=source.url)


def _document(block: DocumentBlock, where: str) -> list[chat_pb2.ContentPart]:
    """A document block as file parts (core inlines text and carries or refuses PDFs); a
    `content` source is plain text and image blocks already, a `file` source is refused."""
    source = block.source
    name = block.title or ""
    if isinstance(source, FileSource):
        raise invalid(
            f"'{where}.source.file_id': file ids are not supported: this gateway has no Files API. "
            "Send the document inline (a base64, text or url source).",
            f"{where}.source.file_id",
        )
    if isinstance(source, ContentSource):
        if isinstance(source.content, str):
            return [chat_pb2.ContentPart(text=source.content)]
        return [
            chat_pb2.ContentPart(text=b.text)
            if isinstance(b, TextBlock)
            else chat_pb2.ContentPart(image=_image(b))
            for b in source.content
        ]
    if isinstance(source, Base64Source):
        part = chat_pb2.FilePart(filename=name, url=f"data:{source.media_type};base64,{source.data}")
    elif isinstance(source, TextSource):
        part = chat_pb2.FilePart(filename=name, mime_type=source.media_type, data=source.data.encode())
    else:
        # Core fetches it under the image fetch rules; the URL's last segment names it if untitled.
        tail = source.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        part = chat_pb2.FilePart(filename=name or tail, url=source.url)
    parts = [chat_pb2.ContentPart(file=part)]
    if block.context:
        parts.append(chat_pb2.ContentPart(text=block.context))
    return parts


def _text_parts(content: str | list[Any], where: str) -> list[chat_pb2.ContentPart]:
    """System text: a string or text blocks."""
    if isinstance(content, str):
        return [chat_pb2.ContentPart(text=content)]
    parts = []
    for i, block in enumerate(content):
        if not isinstance(block, TextBlock):
            raise invalid(f"'{where}[{i}]': only text blocks are accepted here.", f"{where}[{i}]")
        parts.append(chat_pb2.ContentPart(text=block.text))
    return parts


def _tool_result(block: ToolResultBlock, where: str) -> list[chat_pb2.Message]:
    """A tool message; images and documents in the result (Claude Code's Read of a PDF) follow
    as a user message (core takes images and files from users only)."""
    tool = chat_pb2.Message(role=chat_pb2.ROLE_TOOL, tool_call_id=block.tool_use_id)
    images = chat_pb2.Message(role=chat_pb2.ROLE_USER)
    content = block.content
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif content is not None:
        for j, part in enumerate(content):
            if isinstance(part, TextBlock):
                texts.append(part.text)
            elif isinstance(part, DocumentBlock):
                images.content.extend(_document(part, f"{where}.content[{j}]"))
            else:
                images.content.add(image=_image(part))
    tool.content.add(text="\n".join(texts))
    tool.tool_error = bool(block.is_error)
    return [tool, images] if images.content else [tool]


def _messages(message: Message, index: int) -> list[chat_pb2.Message]:
    """One Anthropic message -> core messages: tool_result blocks become tool messages,
    in order, with the user's other blocks around them as user messages."""
    role = ROLES[message.role]
    param = f"messages[{index}].content"
    if isinstance(message.content, str):
        out = chat_pb2.Message(role=role)
        out.content.add(text=message.content)
        return [out]
    if message.role == "system":
        return [chat_pb2.Message(role=role, content=_text_parts(message.content, param))]

    result: list[chat_pb2.Message] = []
    current = chat_pb2.Message(role=role)
    for i, block in enumerate(message.content):
        where = f"{param}[{i}]"
        if isinstance(block, TextBlock):
            current.content.add(text=block.text)
        elif isinstance(block, ImageBlock):
            current.content.add(image=_image(block))
        elif isinstance(block, ToolUseBlock):
            if role != chat_pb2.ROLE_ASSISTANT:
                raise invalid(f"'{where}': tool_use blocks belong in assistant messages.", where)
            arguments = orjson.dumps(block.input).decode()
            current.tool_calls.add(id=block.id, name=block.name, arguments=arguments)
        elif isinstance(block, ToolResultBlock):
            if role != chat_pb2.ROLE_USER:
                raise invalid(f"'{where}': tool_result blocks belong in user messages.", where)
            if current.content:
                result.append(current)
                current = chat_pb2.Message(role=role)
            result.extend(_tool_result(block, where))
        elif isinstance(block, ThinkingBlock):
            current.reasoning += block.thinking
        elif isinstance(block, RedactedThinkingBlock):
            logger.debug("dropped a redacted_thinking block: it is opaque to the gateway")
        elif isinstance(block, DocumentBlock):
            current.content.extend(_document(block, where))
    if current.content or current.tool_calls or current.reasoning or not result:
        result.append(current)
    return result


def _effort(body: CountTokensRequest) -> chat_pb2.ReasoningEffort:
    effort = body.output_config.effort if body.output_config else None
    thinking = body.thinking
    if thinking is not None and thinking.type == "disabled":
        return chat_pb2.REASONING_EFFORT_UNSPECIFIED  # an explicit "no thinking" wins over effort
    if thinking is None:
        return EFFORTS[effort] if effort else chat_pb2.REASONING_EFFORT_UNSPECIFIED
    if effort:
        return EFFORTS[effort]
    if thinking.type == "enabled" and thinking.budget_tokens is not None:
        for bound, level in BUDGET_EFFORTS:
            if thinking.budget_tokens < bound:
                return level
        return chat_pb2.REASONING_EFFORT_HIGH
    return chat_pb2.REASONING_EFFORT_MEDIUM  # adaptive: the model decides; ask for thinking


def to_chat_request(body: CountTokensRequest, request_id: str) -> chat_pb2.ChatRequest:
    request = chat_pb2.ChatRequest(model=body.model, request_id=request_id)
    if body.system:
        system = _text_parts(body.system, "system")
        if system:
            request.messages.add(role=chat_pb2.ROLE_SYSTEM, content=system)
    for index, message in enumerate(body.messages):
        request.messages.extend(_messages(message, index))

    for tool in body.tools or ():
        if tool.input_schema is None:
            logger.debug("dropped server tool %r (type %r): the gateway cannot run it", tool.name, tool.type)
            continue
        out = request.tools.add(name=tool.name, description=tool.description or "")
        parameters = struct_pb2.Struct()
        parameters.update(tool.input_schema)
        out.parameters.CopyFrom(parameters)
    choice = body.tool_choice
    if choice is not None:
        mode = {
            "auto": chat_pb2.ToolChoice.MODE_AUTO,
            "any": chat_pb2.ToolChoice.MODE_REQUIRED,
            "tool": chat_pb2.ToolChoice.MODE_FUNCTION,
            "none": chat_pb2.ToolChoice.MODE_NONE,
        }[choice.type]
        request.tool_choice.mode = mode
        if choice.type == "tool":
            request.tool_choice.function_name = choice.name or ""
        if choice.disable_parallel_tool_use is not None:
            request.parallel_tool_calls = not choice.disable_parallel_tool_use
    request.reasoning_effort = _effort(body)

    if isinstance(body, MessagesRequest):
        request.user = body.metadata.user_id or "" if body.metadata else ""
        request.affinity_key = request.user
        sampling = request.sampling
        sampling.max_tokens = body.max_tokens
        if body.temperature is not None:
            sampling.temperature = body.temperature
        if body.top_p is not None:
            sampling.top_p = body.top_p
        if body.top_k is not None:
            logger.debug("ignored top_k: the upstream has no such setting")
        sampling.stop.extend(body.stop_sequences or ())
    return request


# --- ChatResponse / ChatEvent -> Anthropic JSON -----------------------------------------------


def usage_dict(usage: chat_pb2.Usage) -> Usage:
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _arguments(text: str) -> dict[str, object]:
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}  # the upstream sent broken JSON; Anthropic's input is always an object
    return value if isinstance(value, dict) else {}


def to_message(response: chat_pb2.ChatResponse, *, message_id: str, model: str) -> MessageObject:
    """A `message` object from core's aggregated answer."""
    content: list[ContentBlock] = []
    if response.reasoning:
        thinking = response.reasoning
        content.append({"type": "thinking", "thinking": thinking, "signature": signature(thinking)})
    if response.content:
        content.append({"type": "text", "text": response.content})
    for call in response.tool_calls:
        arguments = _arguments(call.arguments)
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": response.model or model,
        "content": content,
        "stop_reason": stop_reason(response.finish_reason, response.stop_sequence),
        "stop_sequence": response.stop_sequence or None,
        "usage": usage_dict(response.usage),
    }


MESSAGE_START = b"message_start"
BLOCK_START = b"content_block_start"
BLOCK_DELTA = b"content_block_delta"
BLOCK_STOP = b"content_block_stop"
MESSAGE_DELTA = b"message_delta"
MESSAGE_STOP = b"message_stop"
PING = named_frame(b"ping", {"type": "ping"})


class MessageStream:
    """Turns one answer's ChatEvents into Anthropic's stream events (a `facade.sse.StreamTranslator`).

    Anthropic's order: message_start; per content block content_block_start, its deltas,
    content_block_stop; message_delta (stop_reason, usage); message_stop. A ping follows the
    first block's start, as Anthropic's own streams do. Blocks are opened as the kind of
    output changes (thinking, text, one per tool call); core sends usage before finish.
    """

    __slots__ = ("_block", "_index", "_pinged", "_signature", "_text_delta", "_usage", "message_id", "model")

    def __init__(self, *, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self._index = -1  # of the open block, or of the last one closed
        self._block: str | int | None = None  # "text", "thinking", a tool call's index, None
        self._pinged = False
        self._signature: Any = None  # hashlib object of the open thinking block
        self._usage: chat_pb2.Usage | None = None
        self._text_delta: tuple[bytes, bytes] | None = None

    def _open(self, kind: str | int, block: ContentBlock) -> bytes:
        out = self._close()
        self._index += 1
        self._block = kind
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        out += named_frame(BLOCK_START, start)
        if not self._pinged:
            self._pinged = True
            out += PING
        return out

    def _close(self) -> bytes:
        if self._block is None:
            return b""
        out = b""
        if self._block == "thinking":
            out += self._delta({"type": "signature_delta", "signature": _seal(self._signature)})
            self._signature = None
        self._block = None
        return out + named_frame(BLOCK_STOP, {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: BlockDelta) -> bytes:
        return named_frame(BLOCK_DELTA, {"type": "content_block_delta", "index": self._index, "delta": delta})

    # --- facade.sse.StreamTranslator ---

    def start(self, first: chat_pb2.ChatEvent) -> bytes:
        message: MessageObject = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Counts come with core's usage event at the end; message_delta carries them.
            "usage": usage_dict(chat_pb2.Usage()),
        }
        return named_frame(MESSAGE_START, {"type": "message_start", "message": message})

    def text(self, text: str) -> bytes:
        out = b""
        if self._block != "text":
            out = self._open("text", {"type": "text", "text": ""})
            # Encoded once per block (its index is fixed); only the text is encoded per token.
            delta = {"type": "text_delta", "text": ""}
            encoded = orjson.dumps({"type": "content_block_delta", "index": self._index, "delta": delta})
            head, tail = encoded.split(b'"text":""')
            self._text_delta = (b"event: " + BLOCK_DELTA + b"\ndata: " + head + b'"text":', tail + b"\n\n")
        parts = self._text_delta
        assert parts is not None
        return out + parts[0] + orjson.dumps(text) + parts[1]

    def event(self, event: chat_pb2.ChatEvent) -> bytes:
        kind = event.WhichOneof("event")
        if kind == "text":
            return self.text(event.text.text)
        if kind == "reasoning":
            out = b""
            if self._block != "thinking":
                out = self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                self._signature = hashlib.sha256()
            self._signature.update(event.reasoning.text.encode())
            return out + self._delta({"type": "thinking_delta", "thinking": event.reasoning.text})
        if kind == "tool_call":
            call = event.tool_call
            out = b""
            if self._block != call.index and (call.id or call.name):
                out = self._open(
                    call.index, {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
                )
            if self._block == call.index and call.arguments:
                out += self._delta({"type": "input_json_delta", "partial_json": call.arguments})
            return out
        if kind == "usage":
            self._usage = event.usage
            return b""
        if kind == "finish":
            finish = event.finish
            usage = self._usage or chat_pb2.Usage()
            delta: MessageDelta = {
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason(finish.reason, finish.stop_sequence),
                    "stop_sequence": finish.stop_sequence or None,
                },
                "usage": usage_dict(usage),
            }
            return self._close() + named_frame(MESSAGE_DELTA, delta)
        return b""  # an event kind newer than this facade: skip rather than fail

    def end(self) -> bytes:
        return self._close() + named_frame(MESSAGE_STOP, {"type": "message_stop"})

    def error(self, error: OpenAIError) -> bytes:
        # Headers are gone: the failure travels in-band, as Anthropic's `error` event.
        return named_frame(b"error", error_body(error_type(error.status), error.message))
