"""Gateway ChatRequest -> Cursor's StreamUnifiedChatRequestWithTools (docs/cursor-protocol.md).

Caller-defined tools ride Cursor's native MCP-tool path: declared in `mcp_tools`, called through
`ClientSideToolV2Call` frames, answered in the next request's history as `tool_results`.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.json_format import MessageToDict

from aiserver.v1 import chat_pb2 as cursor
from aiserver.v1 import tools_pb2
from core.upstream.images import ImageLoader
from core.upstream.prompt import declared_tools, system_context, text_of
from cursorgate.v1 import chat_pb2

Role = chat_pb2.Role
Mode = chat_pb2.ToolChoice.Mode
Effort = chat_pb2.ReasoningEffort
HUMAN = cursor.ConversationMessage.MessageType.MESSAGE_TYPE_HUMAN
AI = cursor.ConversationMessage.MessageType.MESSAGE_TYPE_AI
CHAT = cursor.StreamUnifiedChatRequest.UnifiedMode.UNIFIED_MODE_CHAT
AGENT = cursor.StreamUnifiedChatRequest.UnifiedMode.UNIFIED_MODE_AGENT
MCP = tools_pb2.ClientSideToolV2.CLIENT_SIDE_TOOL_V2_MCP
THINKING_HIGH = cursor.StreamUnifiedChatRequest.ThinkingLevel.THINKING_LEVEL_HIGH
THINKING_MEDIUM = cursor.StreamUnifiedChatRequest.ThinkingLevel.THINKING_LEVEL_MEDIUM

# Caller-defined tools are MCP tools of this pseudo server ([W] adapter uses the same name).
TOOL_SERVER = "custom"
# OpenAI tool-call ids carry Cursor's model_call_id too, so a stateless gateway can send it back.
MODEL_CALL_SEP = "__mc_"


def openai_call_id(tool_call_id: str, model_call_id: str) -> str:
    return f"{tool_call_id}{MODEL_CALL_SEP}{model_call_id}" if model_call_id else tool_call_id


def split_call_id(call_id: str) -> tuple[str, str]:
    tool_call_id, _, model_call_id = call_id.partition(MODEL_CALL_SEP)
    return tool_call_id, model_call_id


@dataclass(frozen=True, slots=True)
class Environment:
    client_version: str
    timezone: str = "UTC"


def thinking_level(request: chat_pb2.ChatRequest) -> int:
    effort = request.reasoning_effort
    if effort in (Effort.REASONING_EFFORT_HIGH, Effort.REASONING_EFFORT_XHIGH):
        return THINKING_HIGH
    if effort in (
        Effort.REASONING_EFFORT_MINIMAL,
        Effort.REASONING_EFFORT_LOW,
        Effort.REASONING_EFFORT_MEDIUM,
    ):
        return THINKING_MEDIUM
    # [W] asks for HIGH on thinking variants.
    return THINKING_HIGH if request.model.endswith("-thinking") else 0


def _tool_result(
    call: chat_pb2.ToolCall, index: int, output: str, failed: bool = False
) -> cursor.ConversationMessage.ToolResult:
    tool_call_id, model_call_id = split_call_id(call.id)
    # The MCP CallToolResult shape Cursor's own client sends back ([W] tool_result.rs).
    result_json = json.dumps({"content": [{"type": "text", "text": output}], "isError": failed})
    mcp_tool = tools_pb2.MCPParams.Tool(name=call.name, parameters=call.arguments, server_name=TOOL_SERVER)
    original = tools_pb2.ClientSideToolV2Call(
        tool=MCP,
        tool_call_id=tool_call_id,
        name=call.name,
        raw_args=call.arguments,
        mcp_params=tools_pb2.MCPParams(tools=[mcp_tool]),
        tool_index=index,
        model_call_id=model_call_id or None,
    )
    return cursor.ConversationMessage.ToolResult(
        tool_call_id=tool_call_id,
        tool_name=call.name,
        tool_index=index,
        raw_args=call.arguments,
        content=output,
        model_call_id=model_call_id or None,
        result=tools_pb2.ClientSideToolV2Result(
            tool=MCP,
            tool_call_id=tool_call_id,
            model_call_id=model_call_id or None,
            tool_index=index,
            mcp_result=tools_pb2.MCPResult(selected_tool=call.name, result=result_json),
        ),
        tool_call=original,
    )


async def build_request(
    request: chat_pb2.ChatRequest, env: Environment, images: ImageLoader, *, model: str = ""
) -> cursor.StreamUnifiedChatRequestWithTools:
    """`model`: the name to send when Cursor lists a server_model_name that differs."""
    tools = declared_tools(request)
    agentic = bool(tools)
    mode = AGENT if agentic else CHAT
    outputs = {m.tool_call_id: text_of(m) for m in request.messages if m.role == Role.ROLE_TOOL}
    failed = {m.tool_call_id for m in request.messages if m.role == Role.ROLE_TOOL and m.tool_error}
    image_counter = random.randint(256, 383)  # noqa: S311 - [W]'s per-request image uuid counter

    conversation: list[cursor.ConversationMessage] = []
    for i, message in enumerate(request.messages):
        if message.role == Role.ROLE_USER:
            msg = cursor.ConversationMessage(text=text_of(message), type=HUMAN, bubble_id=str(uuid.uuid4()))
            for j, part in enumerate(message.content):
                if part.HasField("image"):
                    image_counter += 1
                    param = f"messages[{i}].content[{j}].image_url"
                    msg.images.append(await images.load(part.image, param, str(image_counter)))
            conversation.append(msg)
        elif message.role == Role.ROLE_ASSISTANT:
            msg = cursor.ConversationMessage(
                text=text_of(message),
                type=AI,
                bubble_id=str(uuid.uuid4()),
                server_bubble_id=str(uuid.uuid4()),
            )
            if message.reasoning:
                msg.thinking.text = message.reasoning
            for index, call in enumerate(message.tool_calls, start=1):
                output = outputs.get(call.id, "")
                msg.tool_results.append(_tool_result(call, index, output, call.id in failed))
            conversation.append(msg)
        # system/developer go to explicit_context; tool outputs ride on their assistant message.
    if not conversation:
        conversation.append(cursor.ConversationMessage(text="", type=HUMAN, bubble_id=str(uuid.uuid4())))
    for msg in conversation:
        msg.unified_mode = mode
    if agentic:
        conversation[-1].supported_tools.append(MCP)

    chat = cursor.StreamUnifiedChatRequest(
        conversation=conversation,
        explicit_context=cursor.ExplicitContext(context=system_context(request, tools)),
        model_details=cursor.ModelDetails(
            model_name=model or request.model,
            azure_state=cursor.AzureState(),
            # Unset unless asked for, as [A] sends it.
            max_mode=True if request.max_mode else None,
        ),
        should_cache=True,
        current_file=cursor.CurrentFileInfo(contents_start_at_line=1, total_number_of_lines=1),
        use_new_compression_scheme=True,
        is_chat=not agentic,
        conversation_id=str(uuid.uuid4()),
        environment_info=cursor.EnvironmentInfo(
            exthost_platform="linux",
            exthost_arch="x64",
            local_timestamp=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            cursor_version=env.client_version,
            local_timezone=env.timezone,
        ),
        is_agentic=agentic,
        full_conversation_headers_only=[
            cursor.ConversationMessageHeader(
                bubble_id=m.bubble_id,
                server_bubble_id=m.server_bubble_id if m.HasField("server_bubble_id") else None,
                type=m.type,
            )
            for m in conversation
        ],
        allow_model_fallbacks=False,
        unified_mode=mode,
        should_disable_tools=not agentic,
        uses_rules=False,
        unified_mode_name="Agent" if agentic else "Ask",
    )
    if agentic:
        chat.supported_tools.append(MCP)
        for tool in tools:
            chat.mcp_tools.append(
                tools_pb2.MCPParams.Tool(
                    name=tool.name,
                    description=tool.description,
                    parameters=json.dumps(MessageToDict(tool.parameters)),
                    server_name=TOOL_SERVER,
                )
            )
    level = thinking_level(request)
    if level:
        chat.thinking_level = level  # type: ignore[assignment]
    return cursor.StreamUnifiedChatRequestWithTools(stream_unified_chat_request=chat)
