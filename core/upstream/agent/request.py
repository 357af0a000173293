"""Gateway ChatRequest -> the first frame of an agent Run, plus the blobs the Run will ask for.

Strategy "handoff + replay" (agent-protocol.md §4.3-4.4, from sub2api): every HTTP request is a
new Run, so the gateway keeps no state between requests. The caller's history is replayed in two
forms, both as KV blobs that only this Run's store serves:
  - `root_prompt_messages_json`: JSON messages ({"role", "content"}) the server builds the model's
    prompt from: the system text first, then every earlier message, tool calls and results
    included (sub2api: "turns[] is display metadata only"; the prompt comes from these);
  - `turns`: ConversationTurnStructure blobs whose user message and steps are blobs too; a tool
    call is a ConversationStep{tool_call: McpToolCall{args, result}} with the caller's result.
The newest user message is the Run's action; when the conversation ends with tool results
instead (the second request of a tool round trip), the action carries an empty user message and
the model continues from the replayed results (verified against the simulator only).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field

from google.protobuf.json_format import MessageToDict

from agent.v1 import agent_pb2 as agent
from core.upstream.agent import values
from core.upstream.images import ImageLoader
from core.upstream.prompt import declared_tools, system_context, text_of
from cursorgate.v1 import chat_pb2

Role = chat_pb2.Role

# Caller tools are MCP tools of this pseudo server ([OMP], [SUB]; agent-protocol.md §8).
PROVIDER = "pi-agent"
# AgentMode ([OMP] enum): agent when the caller declared tools, ask otherwise ([SUB], single source:
# ask mode keeps the model off Cursor's built-in tool detours).
MODE_AGENT = 1
MODE_ASK = 2


def blob_id(data: bytes) -> bytes:
    """Blob ids are the SHA-256 of the data ([OMP], [SUB])."""
    return hashlib.sha256(data).digest()


@dataclass
class BlobStore:
    """This Run's KV store: seeded with the replayed history, filled by the server's set_blob."""

    blobs: dict[bytes, bytes] = field(default_factory=dict)

    def put(self, data: bytes) -> bytes:
        key = blob_id(data)
        self.blobs[key] = data
        return key

    def get(self, key: bytes) -> bytes | None:
        return self.blobs.get(key)

    def set(self, key: bytes, data: bytes) -> None:
        self.blobs[key] = data


@dataclass
class Run:
    """Everything one Run needs from the request: its first frame, its blobs, its tools."""

    message: agent.AgentClientMessage
    store: BlobStore
    tools: list[agent.McpToolDefinition]


def tool_definition(tool: chat_pb2.Tool) -> agent.McpToolDefinition:
    schema = MessageToDict(tool.parameters) if tool.HasField("parameters") else {}
    schema = schema or {"type": "object", "properties": {}}
    return agent.McpToolDefinition(
        name=tool.name,
        description=tool.description,
        input_schema=values.encode(schema),
        provider_identifier=PROVIDER,
        tool_name=tool.name,
        input_schema_json=json.dumps(schema, separators=(",", ":")),
    )


def mime_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class _Replay:
    """The history as root-prompt JSON messages and turn blobs, built in one pass."""

    def __init__(self, store: BlobStore, mode: int) -> None:
        self.store = store
        self.mode = mode
        self.prompt: list[bytes] = []
        self.turns: list[tuple[agent.UserMessage, list[agent.ConversationStep]]] = []
        self._calls: dict[str, agent.ConversationStep] = {}

    def _json(self, message: dict[str, object]) -> None:
        self.prompt.append(self.store.put(json.dumps(message, ensure_ascii=False).encode()))

    def _steps(self) -> list[agent.ConversationStep]:
        if not self.turns:  # history that starts with the assistant: a turn with no user text
            self.turns.append((agent.UserMessage(message_id=str(uuid.uuid4()), mode=self.mode), []))
        return self.turns[-1][1]

    def system(self, text: str) -> None:
        if text:
            self._json({"role": "system", "content": text})

    def user(self, text: str) -> None:
        self._json({"role": "user", "content": [{"type": "text", "text": text}]})
        message = agent.UserMessage(text=text, message_id=str(uuid.uuid4()), mode=self.mode)
        message.selected_context.SetInParent()
        self.turns.append((message, []))

    def assistant(self, message: chat_pb2.Message) -> None:
        steps = self._steps()
        if message.reasoning:
            steps.append(
                agent.ConversationStep(thinking_message=agent.ThinkingMessage(text=message.reasoning))
            )
        text = text_of(message)
        if text:
            self._json({"role": "assistant", "content": [{"type": "text", "text": text}]})
            steps.append(agent.ConversationStep(assistant_message=agent.AssistantMessage(text=text)))
        for call in message.tool_calls:
            try:
                parsed = json.loads(call.arguments or "{}")
            except ValueError:
                parsed = {"args": call.arguments}
            self._json(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool-call", "toolCallId": call.id, "toolName": call.name, "args": parsed}
                    ],
                }
            )
            step = agent.ConversationStep()
            step.tool_call.tool_call_id = call.id
            step.tool_call.mcp_tool_call.args.CopyFrom(_mcp_args(call.id, call.name, call.arguments))
            steps.append(step)
            self._calls[call.id] = step

    def tool(self, message: chat_pb2.Message, names: dict[str, str]) -> None:
        output = text_of(message)
        name = names.get(message.tool_call_id, message.name)
        self._json(
            {
                "role": "tool",
                "id": message.tool_call_id,
                "content": [
                    {
                        "type": "tool-result",
                        "toolCallId": message.tool_call_id,
                        "toolName": name,
                        "result": output,
                        "isError": message.tool_error,
                    }
                ],
            }
        )
        step = self._calls.get(message.tool_call_id)
        if step is None:  # a result whose call is not in the history: kept, Cursor judges it
            step = agent.ConversationStep()
            step.tool_call.tool_call_id = message.tool_call_id
            step.tool_call.mcp_tool_call.args.CopyFrom(_mcp_args(message.tool_call_id, name, "{}"))
            self._steps().append(step)
            self._calls[message.tool_call_id] = step
        result = step.tool_call.mcp_tool_call.result.success
        result.content.add().text.text = output
        result.is_error = message.tool_error

    def turn_blobs(self) -> list[bytes]:
        ids = []
        for user, steps in self.turns:
            turn = agent.ConversationTurnStructure()
            body = turn.agent_conversation_turn
            body.user_message = self.store.put(user.SerializeToString())
            body.steps.extend(self.store.put(step.SerializeToString()) for step in steps)
            ids.append(self.store.put(turn.SerializeToString()))
        return ids


def _mcp_args(call_id: str, name: str, arguments: str) -> agent.McpArgs:
    return agent.McpArgs(
        name=name,
        args=values.args_map(arguments),
        tool_call_id=call_id,
        provider_identifier=PROVIDER,
        tool_name=name,
    )


async def build_run(
    request: chat_pb2.ChatRequest, images: ImageLoader, *, model: str, max_mode: bool = False
) -> Run:
    """`model`: the id Cursor wants on the wire (server_model_name where it differs)."""
    tools = [tool_definition(t) for t in declared_tools(request)]
    mode = MODE_AGENT if tools else MODE_ASK
    store = BlobStore()
    replay = _Replay(store, mode)
    replay.system(system_context(request, declared_tools(request)))

    kept = [
        i for i, m in enumerate(request.messages) if m.role not in (Role.ROLE_SYSTEM, Role.ROLE_DEVELOPER)
    ]
    current_index = -1
    if kept and request.messages[kept[-1]].role == Role.ROLE_USER:
        current_index = kept.pop()
    current = request.messages[current_index] if current_index >= 0 else None
    chat = [request.messages[i] for i in kept]
    names = {call.id: call.name for m in chat for call in m.tool_calls}
    for message in chat:
        if message.role == Role.ROLE_USER:
            replay.user(text_of(message))
        elif message.role == Role.ROLE_ASSISTANT:
            replay.assistant(message)
        elif message.role == Role.ROLE_TOOL:
            replay.tool(message, names)

    user = agent.UserMessage(message_id=str(uuid.uuid4()), mode=mode)
    user.selected_context.SetInParent()  # sent even when empty ([9R])
    if current is not None:
        user.text = text_of(current)
        for j, part in enumerate(current.content):
            if part.HasField("image"):
                param = f"messages[{current_index}].content[{j}].image_url"
                image_id = str(uuid.uuid4())
                loaded = await images.load(part.image, param, image_id)
                user.selected_context.selected_images.append(
                    agent.SelectedImage(
                        uuid=image_id,
                        data=loaded.data,
                        mime_type=mime_type(loaded.data),
                        dimension=agent.SelectedImage.Dimension(
                            width=loaded.dimension.width, height=loaded.dimension.height
                        ),
                    )
                )

    # PDFs (prompt.resolve_files inlined text files already) ride as documents of the Run's user
    # message (agent-protocol.md §3: SelectedContext 25, [PYC] only). Earlier messages replay as
    # blobs with no such field, so every PDF of the conversation is attached here, in order.
    for message in request.messages:
        for part in message.content:
            if part.HasField("file"):
                user.selected_context.documents.append(
                    agent.SelectedDocument(
                        uuid=str(uuid.uuid4()),
                        filename=part.file.filename,
                        mime_type=part.file.mime_type,
                        data=part.file.data,
                    )
                )

    conversation_id = str(uuid.uuid4())
    run = agent.AgentRunRequest(
        action=agent.ConversationAction(user_message_action=agent.UserMessageAction(user_message=user)),
        model_details=agent.ModelDetails(model_id=model, display_model_id=model, display_name=model),
        requested_model=agent.RequestedModel(model_id=model, max_mode=max_mode),
        conversation_id=conversation_id,
        exclude_workspace_context=False,
        conversation_group_id=conversation_id,
        client_supports_inline_images=True,
        run_id=str(uuid.uuid4()),
    )
    if max_mode:
        run.model_details.max_mode = True
    run.mcp_tools.SetInParent()  # always present, empty without tools (agent-protocol.md §8)
    run.mcp_tools.mcp_tools.extend(tools)
    state = run.conversation_state
    state.SetInParent()
    state.mode = mode
    state.root_prompt_messages_json.extend(replay.prompt)
    state.turns.extend(replay.turn_blobs())
    return Run(agent.AgentClientMessage(run_request=run), store, tools)
