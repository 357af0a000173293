"""Checks on a ChatRequest that hold for every caller (facade or internal gRPC)."""

from __future__ import annotations

import json
import math
import re

from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict

from core.errors import Code, GatewayError, echo, invalid
from cursorgate.v1 import chat_pb2

Role = chat_pb2.Role
ToolChoiceMode = chat_pb2.ToolChoice.Mode

# OpenAI's rule for function names.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_MESSAGES = 2_000
MAX_TOOLS = 128
MAX_STOP = 4
# Images per request (each up to CURSORGATE_IMAGE_MAX_BYTES); Anthropic's API allows 100, Cursor's
# IDE sends a handful.
MAX_IMAGES = 32
# File parts per request (each up to CURSORGATE_FILE_MAX_BYTES).
MAX_FILES = 20
# Serialized size of one tool's parameter schema; large MCP schemas stay far below it.
MAX_TOOL_SCHEMA_BYTES = 64 * 1024

# Cursor (like connect's default) refuses a message over 4 MiB with resource_exhausted. A request
# that cannot fit is refused here, before any upstream work: sent, it would fail on every account.
UPSTREAM_MESSAGE_LIMIT = 4 * 1024 * 1024
# What the bound below may reach: the rest is headroom for what the upstream request adds on its
# own (environment, model details, instructions, ids).
MAX_UPSTREAM_BYTES = UPSTREAM_MESSAGE_LIMIT - 256 * 1024
# Per message and per tool call, the bytes the upstream request adds around the caller's text
# (bubble ids, conversation headers, tool-call envelopes), rounded well up.
MESSAGE_OVERHEAD = 256
TOOL_CALL_OVERHEAD = 1024
BASE_OVERHEAD = 4096
MIB = 1024 * 1024


# Longest model id accepted; real ids are a few dozen characters. Checked before anything echoes it.
MAX_MODEL_ID = 200


def validate_chat(request: chat_pb2.ChatRequest) -> None:
    if not request.model:
        raise invalid("'model' is required.", "model")
    if len(request.model) > MAX_MODEL_ID:
        raise invalid(f"'model' may be at most {MAX_MODEL_ID} characters.", "model")
    _validate_enums(request)
    if not request.messages:
        raise invalid("'messages' must contain at least one message.", "messages")
    if len(request.messages) > MAX_MESSAGES:
        raise invalid(f"At most {MAX_MESSAGES} messages are accepted.", "messages")
    _validate_tools(request)
    _validate_messages(request)
    sampling = request.sampling
    if len(sampling.stop) > MAX_STOP:
        raise invalid(f"At most {MAX_STOP} stop sequences are accepted.", "stop")
    if sampling.HasField("max_tokens") and sampling.max_tokens < 1:
        raise invalid("'max_tokens' must be at least 1.", "max_tokens")
    if sampling.HasField("temperature") and not 0 <= sampling.temperature <= 2:
        raise invalid("'temperature' must be between 0 and 2.", "temperature")
    if sampling.HasField("top_p") and not 0 <= sampling.top_p <= 1:
        raise invalid("'top_p' must be between 0 and 1.", "top_p")
    _validate_size(request)


def _validate_enums(request: chat_pb2.ChatRequest) -> None:
    """proto3 enums are open: a gRPC caller can send any number. Only the named values mean
    something here; anything else is refused in our words (it would fail deep inside otherwise)."""
    if request.reasoning_effort not in chat_pb2.ReasoningEffort.values():
        raise invalid(f"Unknown reasoning_effort value {request.reasoning_effort}.", "reasoning_effort")
    if request.tool_choice.mode not in ToolChoiceMode.values():
        raise invalid(f"Unknown tool_choice.mode value {request.tool_choice.mode}.", "tool_choice")
    for i, message in enumerate(request.messages):
        if message.role not in Role.values():
            raise invalid(f"Unknown role value {message.role}.", f"messages[{i}].role")


def _validate_tools(request: chat_pb2.ChatRequest) -> None:
    if len(request.tools) > MAX_TOOLS:
        raise invalid(f"At most {MAX_TOOLS} tools are accepted.", "tools")
    names: set[str] = set()
    for i, tool in enumerate(request.tools):
        if not TOOL_NAME.match(tool.name):
            raise invalid(
                "Tool names must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'.",
                f"tools[{i}].function.name",
            )
        if tool.name in names:
            raise invalid(f"Duplicate tool name '{echo(tool.name)}'.", f"tools[{i}].function.name")
        names.add(tool.name)
        param = f"tools[{i}].function.parameters"
        if tool.parameters.ByteSize() > MAX_TOOL_SCHEMA_BYTES:
            raise invalid(f"A tool's parameter schema may be at most {MAX_TOOL_SCHEMA_BYTES} bytes.", param)
        if not _finite(tool.parameters):
            raise invalid("Numbers in a tool's parameter schema must be finite.", param)
    choice = request.tool_choice
    if choice.mode in (ToolChoiceMode.MODE_REQUIRED, ToolChoiceMode.MODE_FUNCTION) and not request.tools:
        raise invalid("'tool_choice' requires 'tools'.", "tool_choice")
    if choice.mode == ToolChoiceMode.MODE_FUNCTION and choice.function_name not in names:
        raise invalid(f"'tool_choice' names an unknown tool '{echo(choice.function_name)}'.", "tool_choice")


def _finite(value: struct_pb2.Struct | struct_pb2.ListValue | struct_pb2.Value) -> bool:
    """No NaN or infinity anywhere: Struct carries them, but JSON (what Cursor is sent) cannot."""
    if isinstance(value, struct_pb2.Struct):
        return all(_finite(item) for item in value.fields.values())
    if isinstance(value, struct_pb2.ListValue):
        return all(_finite(item) for item in value.values)
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return math.isfinite(value.number_value)
    if kind == "struct_value":
        return _finite(value.struct_value)
    if kind == "list_value":
        return _finite(value.list_value)
    return True


def _validate_messages(request: chat_pb2.ChatRequest) -> None:
    call_ids: set[str] = set()
    images = 0
    files = 0
    for i, message in enumerate(request.messages):
        if message.role == Role.ROLE_UNSPECIFIED:
            raise invalid("Each message needs a role.", f"messages[{i}].role")
        for call in message.tool_calls:
            if message.role != Role.ROLE_ASSISTANT:
                raise invalid("Only assistant messages carry tool_calls.", f"messages[{i}].tool_calls")
            if not call.id or not call.name:
                raise invalid("Tool calls need an id and a name.", f"messages[{i}].tool_calls")
            call_ids.add(call.id)
        if message.role == Role.ROLE_TOOL:
            if not message.tool_call_id:
                raise invalid("Tool messages need a 'tool_call_id'.", f"messages[{i}].tool_call_id")
            if message.tool_call_id not in call_ids:
                raise invalid(
                    f"'tool_call_id' {echo(message.tool_call_id)!r} answers no earlier assistant tool call.",
                    f"messages[{i}].tool_call_id",
                )
        for part in message.content:
            if part.HasField("file"):
                if message.role != Role.ROLE_USER:
                    raise invalid("Files are accepted in user messages only.", f"messages[{i}].content")
                files += 1
                if files > MAX_FILES:
                    raise invalid(
                        f"At most {MAX_FILES} files are accepted per request.", f"messages[{i}].content"
                    )
                continue
            if not part.HasField("image"):
                continue
            if message.role != Role.ROLE_USER:
                raise invalid("Images are accepted in user messages only.", f"messages[{i}].content")
            images += 1
            if images > MAX_IMAGES:
                raise invalid(
                    f"At most {MAX_IMAGES} images are accepted per request.", f"messages[{i}].content"
                )


def upstream_size_bound(request: chat_pb2.ChatRequest) -> int:
    """An upper bound of the bytes Cursor's request will take for this one, without building it.

    Counts every copy the upstream request makes: a tool call's arguments ride three times (the
    call, its MCP params, the result's raw_args), a tool's output twice (as text and JSON-escaped
    inside the MCP result). Images fetched by URL are unknown here (their size is bounded by
    CURSORGATE_IMAGE_MAX_BYTES, and an upstream size refusal is still the caller's fault).
    """
    total = BASE_OVERHEAD + len(request.model)
    for message in request.messages:
        total += MESSAGE_OVERHEAD + _utf8_len(message.reasoning) + _utf8_len(message.name)
        for part in message.content:
            if part.HasField("image"):
                image = part.image
                if image.HasField("data"):
                    total += len(image.data) + MESSAGE_OVERHEAD
                elif image.url.startswith("data:"):
                    total += len(image.url) * 3 // 4 + MESSAGE_OVERHEAD
                else:
                    total += len(image.url) + MESSAGE_OVERHEAD
            elif part.HasField("file"):
                # At most base64 on the wire (RunInference); an inlined text file is smaller. A
                # fetched file is bounded by CURSORGATE_FILE_MAX_BYTES.
                file = part.file
                size = len(file.data) * 4 // 3 if file.HasField("data") else len(file.url)
                total += size + _utf8_len(file.filename) + MESSAGE_OVERHEAD
            else:
                text = part.text
                total += _utf8_len(text)
                if message.role == Role.ROLE_TOOL:
                    total += len(json.dumps(text))
        for call in message.tool_calls:
            total += TOOL_CALL_OVERHEAD + 3 * _utf8_len(call.arguments)
            total += 4 * _utf8_len(call.name) + 3 * _utf8_len(call.id)
    for tool in request.tools:
        total += MESSAGE_OVERHEAD + _utf8_len(tool.name) + _utf8_len(tool.description)
        if tool.HasField("parameters"):
            total += len(json.dumps(MessageToDict(tool.parameters)))
    return total


def _utf8_len(text: str) -> int:
    # len(text) for ASCII, exact for the rest: up to 4 bytes a character.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _validate_size(request: chat_pb2.ChatRequest) -> None:
    size = upstream_size_bound(request)
    if size > MAX_UPSTREAM_BYTES:
        raise GatewayError(
            Code.ERROR_CODE_REQUEST_TOO_LARGE,
            f"The request would take about {size / MIB:.1f} MiB upstream; Cursor accepts at most "
            f"{MAX_UPSTREAM_BYTES / MIB:.2f} MiB per request. Shorten the conversation or send "
            "smaller images.",
            param="messages",
        )
