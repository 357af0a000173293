"""Gateway ChatRequest -> RunInference's run_request and invoke_model (docs/cursor-protocol.md,
"RunInference"). The client owns the conversation: every call sends the whole message list, the
tools and the sampling settings, and Cursor only routes the model call.
"""

from __future__ import annotations

import base64
import json
import uuid

from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict

from aiserver.v1 import inference_pb2 as inf
from core.upstream.images import ImageLoader
from core.upstream.prompt import declared_tools, text_of
from core.upstream.prompt import system_context as system_prompt
from cursorgate.v1 import chat_pb2

Role = chat_pb2.Role
Mode = chat_pb2.ToolChoice.Mode
USER = inf.INFERENCE_MESSAGE_ROLE_USER
ASSISTANT = inf.INFERENCE_MESSAGE_ROLE_ASSISTANT
TOOL = inf.INFERENCE_MESSAGE_ROLE_TOOL
SYSTEM = inf.INFERENCE_MESSAGE_ROLE_SYSTEM

# What the IDE sends as run_request.agent_mode ([OMP-new] request.ts).
AGENT_MODE = "agent"
# The error result [OMP-new] puts in for a call the history never answered (providers refuse
# unpaired tool calls).
MISSING_RESULT = "Tool call ended before a result was available."

# Magic bytes of the formats ImageLoader admits -> the mime type Cursor is told.
_MIME = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"))


def mime_type(data: bytes) -> str:
    for magic, mime in _MIME:
        if data.startswith(magic):
            return mime
    return "image/webp" if data[8:12] == b"WEBP" else "application/octet-stream"


def struct_of(arguments: str) -> struct_pb2.Struct:
    """A call's JSON arguments as a Struct; arguments that are not a JSON object give an empty one
    (the raw text still travels in raw_tool_call_args)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return struct_pb2.Struct()
    return ParseDict(value, struct_pb2.Struct()) if isinstance(value, dict) else struct_pb2.Struct()


def model_config(sampling: chat_pb2.SamplingOptions) -> inf.InferenceModelConfig | None:
    config = inf.InferenceModelConfig(stop_sequences=list(sampling.stop))
    if sampling.HasField("max_tokens"):
        config.max_tokens = sampling.max_tokens
    if sampling.HasField("temperature"):
        config.temperature = sampling.temperature
    if sampling.HasField("top_p"):
        config.top_p = sampling.top_p
    return config if config.ListFields() else None


def run_request(
    request: chat_pb2.ChatRequest, model: str, conversation_id: str
) -> inf.RunInferenceRunRequest:
    """The outer run: conversation, model routing and the last user text as routing hint."""
    run = inf.RunInferenceRunRequest(
        conversation_id=conversation_id,
        requested_model=inf.InferenceRequestedModel(model_id=model, max_mode=request.max_mode),
        agent_mode=AGENT_MODE,
    )
    last = request.messages[-1] if request.messages else None
    if last is not None and last.role == Role.ROLE_USER and text_of(last).strip():
        run.routing_conversation.append(
            inf.RunInferenceRoutingMessage(role=inf.RUN_INFERENCE_ROUTING_ROLE_USER, text=text_of(last))
        )
    return run


def _missing(call: chat_pb2.ToolCall) -> inf.InferenceCoreMessage:
    part = inf.InferenceToolResultPart(
        tool_call_id=call.id,
        tool_name=call.name,
        result=struct_pb2.Value(string_value=MISSING_RESULT),
        is_error=True,
    )
    return inf.InferenceCoreMessage(role=TOOL, tool_content=inf.InferenceToolResultContent(parts=[part]))


async def _user(message: chat_pb2.Message, i: int, images: ImageLoader) -> inf.InferenceCoreMessage:
    if not any(part.HasField("image") or part.HasField("file") for part in message.content):
        return inf.InferenceCoreMessage(role=USER, text=text_of(message))
    parts: list[inf.InferenceContentPart] = []
    for j, part in enumerate(message.content):
        if part.HasField("text"):
            parts.append(inf.InferenceContentPart(text=inf.InferenceTextPart(text=part.text)))
        elif part.HasField("image"):
            loaded = await images.load(part.image, f"messages[{i}].content[{j}].image_url", str(j))
            image = inf.InferenceImagePart(
                data=base64.b64encode(loaded.data).decode(), mime_type=mime_type(loaded.data)
            )
            parts.append(inf.InferenceContentPart(image=image))
        elif part.HasField("file"):
            # A PDF (prompt.resolve_files inlined text files already) as a file part: base64
            # data, media type, filename (agent-protocol.md §9, [OMP-new] inference.proto).
            file = inf.InferenceFilePart(
                data=base64.b64encode(part.file.data).decode(),
                media_type=part.file.mime_type,
                filename=part.file.filename or None,
            )
            parts.append(inf.InferenceContentPart(file=file))
    return inf.InferenceCoreMessage(role=USER, parts=inf.InferenceContentParts(parts=parts))


def _assistant(message: chat_pb2.Message) -> inf.InferenceCoreMessage:
    out = inf.InferenceCoreMessage(role=ASSISTANT)
    text = text_of(message)
    if text:
        out.text = text
    if message.reasoning:
        out.reasoning_parts.append(inf.InferenceReasoningPart(text=message.reasoning))
    for call in message.tool_calls:
        out.tool_calls.append(
            inf.InferenceToolCall(
                tool_call_id=call.id,
                tool_name=call.name,
                args=struct_of(call.arguments),
                raw_tool_call_args=call.arguments or "{}",
            )
        )
    return out


async def stream_request(
    request: chat_pb2.ChatRequest, images: ImageLoader, conversation_id: str
) -> inf.InferenceStreamRequest:
    """One model call: the leading system message, the history, the declared tools, sampling."""
    tools = declared_tools(request)
    body = inf.InferenceStreamRequest(conversation_id=conversation_id)
    system = system_prompt(request, tools)
    if system:
        body.messages.append(inf.InferenceCoreMessage(role=SYSTEM, text=system))
    names: dict[str, str] = {}
    pending: dict[str, chat_pb2.ToolCall] = {}

    def flush() -> None:
        body.messages.extend(_missing(call) for call in pending.values())
        pending.clear()

    for i, message in enumerate(request.messages):
        if message.role == Role.ROLE_TOOL:
            call_id = message.tool_call_id
            pending.pop(call_id, None)
            part = inf.InferenceToolResultPart(
                tool_call_id=call_id,
                tool_name=names.get(call_id, message.name),
                result=struct_pb2.Value(string_value=text_of(message)),
                is_error=message.tool_error,
            )
            body.messages.append(
                inf.InferenceCoreMessage(role=TOOL, tool_content=inf.InferenceToolResultContent(parts=[part]))
            )
            continue
        if message.role in (Role.ROLE_SYSTEM, Role.ROLE_DEVELOPER):
            continue  # in the leading system message
        flush()
        if message.role == Role.ROLE_USER:
            body.messages.append(await _user(message, i, images))
        elif message.role == Role.ROLE_ASSISTANT:
            body.messages.append(_assistant(message))
            for call in message.tool_calls:
                names[call.id] = call.name
                pending[call.id] = call
    flush()
    for tool in tools:
        parameters = struct_pb2.Struct()
        parameters.get_or_create_struct("jsonSchema").CopyFrom(tool.parameters)
        body.tools.append(
            inf.InferenceAgentTool(name=tool.name, description=tool.description, parameters=parameters)
        )
    config = model_config(request.sampling)
    if config is not None:
        body.model_config.CopyFrom(config)
    return body


async def build(
    request: chat_pb2.ChatRequest, images: ImageLoader, *, model: str
) -> tuple[inf.RunInferenceClientMessage, inf.RunInferenceClientMessage]:
    """(run_request, invoke_model) for one chat call; `model` is the name to send on the wire."""
    conversation_id = str(uuid.uuid4())
    run = run_request(request, model, conversation_id)
    invoke = inf.RunInferenceInvokeModel(
        invocation_id=str(uuid.uuid4()), request=await stream_request(request, images, conversation_id)
    )
    return inf.RunInferenceClientMessage(run_request=run), inf.RunInferenceClientMessage(invoke_model=invoke)
