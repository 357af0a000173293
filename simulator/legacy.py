"""aiserver.v1.ChatService/StreamUnifiedChatWithTools, simulated: the legacy dialect's wire."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from aiserver.v1 import chat_pb2, tools_pb2
from simulator import script
from simulator.config import SimulatorSettings
from simulator.control import SimState
from simulator.pacing import paced
from simulator.service import Checks, admit, log_request
from simulator.view import ChatView, ViewImage, ViewMessage, ViewTool, ViewToolCall, ViewToolResult

Message = chat_pb2.StreamUnifiedChatResponseWithTools
MCP = tools_pb2.ClientSideToolV2.CLIENT_SIDE_TOOL_V2_MCP
HUMAN = chat_pb2.ConversationMessage.MessageType.MESSAGE_TYPE_HUMAN


def view_of(chat: chat_pb2.StreamUnifiedChatRequest) -> ChatView:
    view = ChatView(
        dialect="legacy",
        model=chat.model_details.model_name,
        system=chat.explicit_context.context,
        thinking=bool(chat.thinking_level),
        max_mode=chat.model_details.max_mode,
    )
    for tool in chat.mcp_tools:
        try:
            schema = json.loads(tool.parameters or "{}")
        except ValueError:
            schema = {}
        view.tools.append(ViewTool(tool.name, tool.description, schema if isinstance(schema, dict) else {}))
    for message in chat.conversation:
        if message.type == HUMAN:
            images = [
                ViewImage(i.dimension.width, i.dimension.height, base64.b64encode(i.data).decode())
                for i in message.images
            ]
            view.messages.append(ViewMessage("user", message.text, images=images))
            continue
        view.messages.append(
            ViewMessage(
                "assistant",
                message.text,
                tool_calls=[
                    ViewToolCall(r.tool_call_id, r.tool_name, r.raw_args) for r in message.tool_results
                ],
                reasoning=message.thinking.text,
            )
        )
        if message.tool_results:
            results = [
                ViewToolResult(r.tool_call_id, r.tool_name, r.content or r.result.mcp_result.result)
                for r in message.tool_results
            ]
            view.messages.append(ViewMessage("tool", tool_results=results))
    return view


def render(frame: script.Frame) -> list[Message]:
    if isinstance(frame, script.Text):
        return [Message(stream_unified_chat_response=chat_pb2.StreamUnifiedChatResponse(text=frame.text))]
    if isinstance(frame, script.Thinking):
        thinking = chat_pb2.ConversationMessage.Thinking(text=frame.text)
        return [Message(stream_unified_chat_response=chat_pb2.StreamUnifiedChatResponse(thinking=thinking))]
    return call_frames(frame)


def call_frames(call: script.ToolCall, restart: bool = False) -> list[Message]:
    """A caller tool call as Cursor streams it: cumulative raw_args while is_streaming, the last
    frame flagged is_last_message. `restart`: first a compact copy of the whole arguments, then
    the growing spaced JSON again, as Cursor was seen to do (issue 9, "Legacy fixes")."""
    tool = tools_pb2.MCPParams.Tool(name=call.name, parameters=call.args, server_name="custom")

    def frame(raw: str, streaming: bool, last: bool) -> Message:
        return Message(
            client_side_tool_v2_call=tools_pb2.ClientSideToolV2Call(
                tool=MCP,
                tool_call_id=call.call_id,
                name=call.name,
                raw_args=raw,
                is_streaming=streaming,
                is_last_message=last,
                mcp_params=tools_pb2.MCPParams(tools=[tool]),
                tool_index=call.index,
                model_call_id=f"mc_sim_{call.index}",
            )
        )

    if not call.streamed:
        return [frame(call.args, False, True)]
    frames = []
    args = call.args
    if restart:
        args = json.dumps(json.loads(call.args), indent=None, separators=(", ", ": "))
        frames.append(frame(json.dumps(json.loads(call.args), separators=(",", ":")), True, False))
    cuts = sorted({len(args) // 3, 2 * len(args) // 3, len(args)})
    return frames + [frame(args[:cut], True, cut == len(args)) for cut in cuts if cut]


class SimChatService:
    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self.settings = settings
        self.state = state
        self.checks = Checks(settings, state)

    async def stream_unified_chat_with_tools(
        self,
        request: chat_pb2.StreamUnifiedChatRequestWithTools,
        ctx: RequestContext[
            chat_pb2.StreamUnifiedChatRequestWithTools, chat_pb2.StreamUnifiedChatResponseWithTools
        ],
    ) -> AsyncIterator[chat_pb2.StreamUnifiedChatResponseWithTools]:
        chat = request.stream_unified_chat_request
        view = view_of(chat)
        log_request(self.state, "legacy", ctx, request, view)
        token = self.checks.token(ctx)
        admit(self.state, self.settings, token, view)
        plan = script.plan_for(view, self.settings.frame_delay_ms)
        restart = script.directives(view.last_user_text()).get("args") == "restart"
        async for frame in paced(plan, self.state):
            if restart and isinstance(frame, script.ToolCall):
                for message in call_frames(dataclasses.replace(frame, streamed=True), restart=True):
                    yield message
                continue
            for message in render(frame):
                yield message

    async def get_prompt_dry_run(
        self, request: chat_pb2.StreamUnifiedChatRequest, ctx: RequestContext[Any, Any]
    ) -> chat_pb2.GetPromptDryRunResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "not simulated")
