"""agent.v1.AgentService, simulated: the agent dialect's wire (Run, bidi; GetUsableModels, unary).

A Run plays Cursor's side of agent-protocol.md §4.1: check the CLI profile, read the run request,
ask for the request context (exec) and every referenced blob (KV get) and wait for each answer,
rebuild the conversation from the blobs as a ChatView, then render the script's plan as
interaction updates, one mcp_args exec per tool call (waiting for the client's result), turn
persistence through KV set (waiting for the acks), a checkpoint and turn_ended with the plan's
usage. Whatever the client leaves unanswered for `agent_reply_timeout` seconds fails the stream
with an error, so that a client that would hang a real Run fails a test instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from agent.v1 import agent_pb2 as agent
from core.upstream.agent import values
from core.upstream.agent.request import blob_id
from simulator import script
from simulator.config import SimulatorSettings
from simulator.control import SimState
from simulator.errors import cursor_error
from simulator.files import check_file
from simulator.pacing import paced
from simulator.service import Checks, admit, log_request
from simulator.view import ChatView, ViewImage, ViewMessage, ViewTool, ViewToolCall, ViewToolResult

Server = agent.AgentServerMessage
Client = agent.AgentClientMessage
MODE_AGENT = 1
MODE_ASK = 2
# What the simulated model says after a handed-off tool call; the gateway must not pass it on.
WIND_DOWN = "I handed the call to the client and will wait for its result."
_END = object()
# Cursor's message size limit (connect's default, TOO_LARGE_MESSAGE in simulator/errors.py).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def _update(**kwargs: Any) -> Server:
    return Server(interaction_update=agent.InteractionUpdate(**kwargs))


class _Peer:
    """The client's side of the stream, read in the background so the Run can wait for answers."""

    def __init__(self, requests: AsyncIterator[Client], timeout: float) -> None:
        self.timeout = timeout
        self.heartbeats = 0
        # Set once the Run has nothing left to wait for; until then the client ending its side
        # means it gave up, and the Run is cancelled as Cursor's would be.
        self.finished = False
        self.error: ConnectError | None = None
        self._run_task = asyncio.current_task()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._read(requests))

    async def _read(self, requests: AsyncIterator[Client]) -> None:
        try:
            # A reset request stream just ends the conversation; a refused message (over the size
            # limit) is the Run's error.
            with contextlib.suppress(Exception):
                try:
                    async for message in requests:
                        self._queue.put_nowait(message)
                except ConnectError as err:
                    self.error = err
        finally:
            self._queue.put_nowait(_END)
            if not self.finished and self._run_task is not None:
                self._run_task.cancel()

    async def close(self) -> None:
        self.finished = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def next(self, what: str) -> Client:
        """The next message that is not a heartbeat; a loud error when none comes in time."""
        while True:
            try:
                message = await asyncio.wait_for(self._queue.get(), self.timeout)
            except TimeoutError:
                raise ConnectError(
                    Code.DEADLINE_EXCEEDED, f"the client left {what} unanswered for {self.timeout:g} s"
                ) from None
            if message is _END:
                self._queue.put_nowait(_END)
                if self.error is not None:
                    raise self.error
                raise ConnectError(Code.CANCELED, f"the client closed the stream with {what} unanswered")
            if message.WhichOneof("message") == "client_heartbeat":
                self.heartbeats += 1
                continue
            return message  # type: ignore[no-any-return]

    async def answer(self, what: str, check: Callable[[Client], bool]) -> Client:
        message = await self.next(what)
        if not check(message):
            raise ConnectError(Code.INVALID_ARGUMENT, f"expected the answer to {what}, got {message}"[:500])
        return message


class _Exchange:
    """Numbering of this Run's exec and KV requests, and the waits for their answers."""

    def __init__(self, peer: _Peer) -> None:
        self.peer = peer
        self._exec = 0
        self._kv = 0

    def exec(self, **args: Any) -> tuple[Server, int, str]:
        self._exec += 1
        exec_id = str(uuid.uuid4())
        message = agent.ExecServerMessage(id=self._exec, exec_id=exec_id, **args)
        return Server(exec_server_message=message), self._exec, exec_id

    async def exec_result(self, number: int, exec_id: str, field: str) -> Any:
        what = f"exec {number} ({field})"

        def ok(m: Client) -> bool:
            r = m.exec_client_message
            return (
                m.WhichOneof("message") == "exec_client_message"
                and r.id == number
                and r.exec_id == exec_id
                and r.WhichOneof("message") == field
            )

        return getattr((await self.peer.answer(what, ok)).exec_client_message, field)

    def kv(self, **args: Any) -> tuple[Server, int]:
        self._kv += 1
        return Server(kv_server_message=agent.KvServerMessage(id=self._kv, **args)), self._kv

    async def kv_result(self, number: int, field: str) -> Any:
        def ok(m: Client) -> bool:
            r = m.kv_client_message
            return (
                m.WhichOneof("message") == "kv_client_message"
                and r.id == number
                and r.WhichOneof("message") == field
            )

        return getattr((await self.peer.answer(f"kv {number} ({field})", ok)).kv_client_message, field)


# `sim: builtin=KIND`: a built-in exec the client must reject -> (args field, result field, check).
_BUILTINS: dict[str, tuple[str, Any, str, Callable[[Any], bool]]] = {
    "read": (
        "read_args",
        agent.ReadArgs(path="/etc/hostname"),
        "read_result",
        lambda r: r.HasField("rejected"),
    ),
    "shell": ("shell_args", agent.ShellArgs(command="ls"), "shell_result", lambda r: r.HasField("rejected")),
    "write": ("write_args", agent.WriteArgs(path="a.txt"), "write_result", lambda r: r.HasField("rejected")),
    "delete": (
        "delete_args",
        agent.DeleteArgs(path="notes.txt"),
        "delete_result",
        lambda r: r.HasField("rejected"),
    ),
    "ls": ("ls_args", agent.LsArgs(path="/"), "ls_result", lambda r: r.HasField("rejected")),
    "grep": ("grep_args", agent.GrepArgs(pattern="x"), "grep_result", lambda r: r.HasField("error")),
    "fetch": (
        "fetch_args",
        agent.FetchArgs(url="https://example.com"),
        "fetch_result",
        lambda r: r.HasField("error"),
    ),
}


class SimAgentService:
    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self.settings = settings
        self.state = state
        self.checks = Checks(settings, state)

    async def get_usable_models(
        self, request: agent.GetUsableModelsRequest, ctx: RequestContext[Any, Any]
    ) -> agent.GetUsableModelsResponse:
        token = self.checks.cli(ctx)
        if self.state.is_retired(token, "agent", self.settings.retired_dialects()):
            raise cursor_error("update_required")
        return agent.GetUsableModelsResponse(
            models=[
                agent.ModelDetails(model_id=n, display_model_id=n, display_name=n, display_name_short=n)
                for n in self.state.models_for(token)
            ]
        )

    async def run(
        self, request: AsyncIterator[Client], ctx: RequestContext[Client, Server]
    ) -> AsyncIterator[Server]:
        peer = _Peer(request, self.settings.agent_reply_timeout)
        try:
            async for message in self._run(peer, ctx):
                yield message
        finally:
            await peer.close()

    async def _run(self, peer: _Peer, ctx: RequestContext[Client, Server]) -> AsyncIterator[Server]:
        first = await peer.next("the run request")
        if first.WhichOneof("message") != "run_request":
            raise ConnectError(Code.INVALID_ARGUMENT, "the first message of a Run must be run_request")
        if first.ByteSize() > MAX_MESSAGE_BYTES:
            raise cursor_error("too_large")  # what Cursor's connect server answers
        run = first.run_request
        try:
            token = self.checks.cli(ctx)
        except ConnectError:
            log_request(self.state, "agent", ctx, run, None)
            raise
        user = run.action.user_message_action.user_message
        view = ChatView(dialect="agent", model=run.requested_model.model_id)
        view.max_mode = run.requested_model.max_mode
        view.thinking = view.model.endswith("-thinking")
        view.tools = [ViewTool(t.name, t.description, _schema(t)) for t in run.mcp_tools.mcp_tools]
        action = _user_view(user)
        # Cursor refuses what it can before it streams (retired, model, limits): a partial view.
        try:
            admit(self.state, self.settings, token, _with(view, action))
            _check_shape(run)
        except ConnectError:
            log_request(self.state, "agent", ctx, run, _with(view, action))
            raise

        # A fault before any frame (after=0) comes before the handshake too: "Cursor sent nothing".
        early = script.plan_for(_with(view, action), self.settings.frame_delay_ms)
        if early.fault and early.after == 0:
            log_request(self.state, "agent", ctx, run, _with(view, action))
            async for _ in paced(early, self.state):
                pass

        wire = _Exchange(peer)
        message, number, exec_id = wire.exec(request_context_args=agent.RequestContextArgs())
        yield message
        result = await wire.exec_result(number, exec_id, "request_context_result")
        context_tools = [t.name for t in result.success.request_context.tools]
        if context_tools != [t.name for t in view.tools]:
            raise ConnectError(Code.INVALID_ARGUMENT, "RequestContext.tools differ from the run's mcp_tools")
        if view.tools:
            message, number, exec_id = wire.exec(mcp_state_exec_args=agent.McpStateExecArgs())
            yield message
            state = await wire.exec_result(number, exec_id, "mcp_state_exec_result")
            servers = state.success.servers
            if not servers or servers[0].status != "connected":
                raise ConnectError(Code.INVALID_ARGUMENT, "the client's MCP server is not connected")

        blobs: dict[bytes, bytes] = {}

        async def fetch(blob: bytes) -> AsyncIterator[Server]:
            message, number = wire.kv(get_blob_args=agent.GetBlobArgs(blob_id=blob))
            yield message
            got = await wire.kv_result(number, "get_blob_result")
            if not got.HasField("blob_data"):
                raise ConnectError(Code.INVALID_ARGUMENT, f"the client does not have blob {blob.hex()[:16]}")
            blobs[blob] = got.blob_data

        state_in = run.conversation_state
        for blob in [*state_in.root_prompt_messages_json, *state_in.turns]:
            async for message in fetch(blob):
                yield message
        for turn_id in state_in.turns:
            turn = agent.ConversationTurnStructure.FromString(blobs[turn_id]).agent_conversation_turn
            for blob in [turn.user_message, *turn.steps]:
                async for message in fetch(blob):
                    yield message
        view.system = "\n\n".join(
            m["content"]
            for m in (json.loads(blobs[b]) for b in state_in.root_prompt_messages_json)
            if m.get("role") == "system" and isinstance(m.get("content"), str)
        )
        for turn_id in state_in.turns:
            _replay(view, agent.ConversationTurnStructure.FromString(blobs[turn_id]), blobs)
        if action is not None:
            view.messages.append(action)
        log_request(self.state, "agent", ctx, run, view)
        forged = script.forged_result(view)
        if forged is not None:
            raise ConnectError(Code.INVALID_ARGUMENT, f"unknown tool_call_id {forged.id!r}")

        opts = script.directives(view.last_user_text())
        async for message in self._builtin(wire, opts.get("builtin", "")):
            yield message
        async for message in self._query(wire, opts.get("query", "")):
            yield message

        plan = script.plan_for(view, self.settings.frame_delay_ms)
        if plan.first_delay_s:
            yield _update(heartbeat=agent.HeartbeatUpdate())  # Cursor's liveness during a pause
        called = False
        async for frame in paced(plan, self.state):
            if isinstance(frame, script.Text):
                yield _update(text_delta=agent.TextDeltaUpdate(text=frame.text))
            elif isinstance(frame, script.Thinking):
                yield _update(thinking_delta=agent.ThinkingDeltaUpdate(text=frame.text))
            else:
                called = True
                async for message in self._tool_call(wire, frame):
                    yield message
        if called:
            yield _update(text_delta=agent.TextDeltaUpdate(text=WIND_DOWN))

        # Turn persistence through the client's store, then the checkpoint and the usage.
        persisted = agent.ConversationTurnStructure()
        persisted.agent_conversation_turn.user_message = user.SerializeToString()
        data = persisted.SerializeToString()
        turn_blob = blob_id(data)
        message, number = wire.kv(set_blob_args=agent.SetBlobArgs(blob_id=turn_blob, blob_data=data))
        yield message
        ack = await wire.kv_result(number, "set_blob_result")
        if ack.HasField("error"):
            raise ConnectError(Code.INTERNAL, f"the client failed to store a blob: {ack.error.message}")
        checkpoint = agent.ConversationStateStructure(
            root_prompt_messages_json=state_in.root_prompt_messages_json,
            turns=[*state_in.turns, turn_blob],
            mode=state_in.mode,
        )
        yield Server(conversation_checkpoint_update=checkpoint)
        peer.finished = True
        yield _update(
            turn_ended=agent.TurnEndedUpdate(
                input_tokens=plan.prompt_tokens,
                output_tokens=plan.completion_tokens,
                cache_read_tokens=plan.cache_read_tokens,
                cache_write_tokens=0,
                reasoning_tokens=plan.reasoning_tokens,
            )
        )

    async def _tool_call(self, wire: _Exchange, frame: script.ToolCall) -> AsyncIterator[Server]:
        args = agent.McpArgs(
            name=frame.name,
            args=values.args_map(frame.args),
            tool_call_id=frame.call_id,
            provider_identifier="pi-agent",
            tool_name=frame.name,
        )
        shown = agent.ToolCall(
            mcp_tool_call=agent.McpToolCall(
                args=agent.McpArgs(name=frame.name, tool_call_id=frame.call_id, tool_name=frame.name)
            )
        )
        model_call = f"mc_sim_{frame.index}"
        if frame.streamed:
            cuts = sorted({len(frame.args) // 3, 2 * len(frame.args) // 3, len(frame.args)})
            for cut in cuts:
                yield _update(
                    partial_tool_call=agent.PartialToolCallUpdate(
                        call_id=frame.call_id,
                        tool_call=shown,
                        args_text_delta=frame.args[:cut],
                        model_call_id=model_call,
                    )
                )
        yield _update(
            tool_call_started=agent.ToolCallStartedUpdate(
                call_id=frame.call_id, tool_call=shown, model_call_id=model_call
            )
        )
        message, number, exec_id = wire.exec(mcp_args=args)
        yield message
        result = await wire.exec_result(number, exec_id, "mcp_result")
        if not (
            result.HasField("success") and result.success.content and result.success.content[0].text.text
        ):
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"the client answered tool call {frame.call_id} without a result"
            )
        done = agent.ToolCall()
        done.CopyFrom(shown)
        done.mcp_tool_call.result.CopyFrom(result)
        yield _update(
            tool_call_completed=agent.ToolCallCompletedUpdate(
                call_id=frame.call_id, tool_call=done, model_call_id=model_call
            )
        )

    async def _builtin(self, wire: _Exchange, kind: str) -> AsyncIterator[Server]:
        """`sim: builtin=KIND`: Cursor asks the client to run one of its own tools first."""
        if not kind:
            return
        if kind == "unknown":  # an exec kind newer than any schema: field 99
            message, number, _ = wire.exec()
            body = agent.ExecServerMessage.FromString(
                message.exec_server_message.SerializeToString() + b"\x9a\x06\x00"
            )
            yield Server(exec_server_message=body)

            def thrown(m: Client) -> bool:
                control = m.exec_client_control_message
                return m.WhichOneof("message") == "exec_client_control_message" and control.throw.id == number

            await wire.peer.answer(f"exec {number} (unknown kind)", thrown)
            return
        if kind not in _BUILTINS:
            raise ConnectError(Code.INVALID_ARGUMENT, f"unknown sim builtin {kind!r}")
        args_field, args, result_field, rejected = _BUILTINS[kind]
        message, number, exec_id = wire.exec(**{args_field: args})
        yield message
        result = await wire.exec_result(number, exec_id, result_field)
        if not rejected(result):
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"the client ran built-in {kind} instead of rejecting it"
            )

    async def _query(self, wire: _Exchange, kind: str) -> AsyncIterator[Server]:
        """`sim: query=KIND`: an interaction query the client must answer (web_search, switch_mode,
        or unknown: a kind newer than any schema)."""
        if not kind:
            return
        query = agent.InteractionQuery(id=7)
        expected = {
            "web_search": "web_search_request_response",
            "switch_mode": "switch_mode_request_response",
        }
        if kind == "unknown":
            query = agent.InteractionQuery.FromString(query.SerializeToString() + b"\xf2\x01\x00")  # field 30
        elif kind == "web_search":
            query.web_search_request_query.SetInParent()
        elif kind == "switch_mode":
            query.switch_mode_request_query.SetInParent()
        else:
            raise ConnectError(Code.INVALID_ARGUMENT, f"unknown sim query {kind!r}")
        yield Server(interaction_query=query)

        def answered(m: Client) -> bool:
            r = m.interaction_response
            if m.WhichOneof("message") != "interaction_response" or r.id != 7:
                return False
            return kind == "unknown" or r.WhichOneof("result") == expected[kind]

        await wire.peer.answer(f"interaction query ({kind})", answered)


def _schema(tool: agent.McpToolDefinition) -> dict[str, Any]:
    schema = values.decode(tool.input_schema) if tool.input_schema else {}
    return schema if isinstance(schema, dict) else {}


def _user_view(user: agent.UserMessage) -> ViewMessage | None:
    images = [
        ViewImage(i.dimension.width, i.dimension.height, base64.b64encode(i.data).decode(), i.mime_type)
        for i in user.selected_context.selected_images
    ]
    files = [
        check_file(d.data, d.mime_type, d.filename, "selected_context.documents")
        for d in user.selected_context.documents
    ]
    if not user.text and not images and not files:
        return None  # a continuation after tool results: nothing new from the user
    return ViewMessage("user", user.text, images=images, files=files)


def _with(view: ChatView, message: ViewMessage | None) -> ChatView:
    partial = ChatView(
        dialect=view.dialect,
        model=view.model,
        tools=view.tools,
        thinking=view.thinking,
        max_mode=view.max_mode,
    )
    if message is not None:
        partial.messages.append(message)
    return partial


def _check_shape(run: agent.AgentRunRequest) -> None:
    """What makes a real Run misbehave silently (agent-protocol.md §7.2), refused loudly here."""
    if not run.HasField("conversation_state") or not run.HasField("mcp_tools"):
        raise ConnectError(Code.INVALID_ARGUMENT, "conversation_state and mcp_tools must be present")
    if run.model_details.model_id != run.requested_model.model_id:
        raise ConnectError(Code.INVALID_ARGUMENT, "model_details and requested_model name different models")
    user = run.action.user_message_action.user_message
    if not user.HasField("selected_context"):
        raise ConnectError(Code.INVALID_ARGUMENT, "the user message has no selected_context")
    mode = MODE_AGENT if run.mcp_tools.mcp_tools else MODE_ASK
    if run.conversation_state.mode != mode or user.mode != mode:
        raise ConnectError(Code.INVALID_ARGUMENT, f"expected mode {mode} for this tool table")
    for tool in run.mcp_tools.mcp_tools:
        if not tool.input_schema or tool.provider_identifier != "pi-agent":
            raise ConnectError(Code.INVALID_ARGUMENT, f"tool {tool.name!r} lacks a schema or provider")


def _replay(view: ChatView, turn: agent.ConversationTurnStructure, blobs: dict[bytes, bytes]) -> None:
    """One replayed turn back into view messages; tool results come from the McpToolCall steps."""
    body = turn.agent_conversation_turn
    user = agent.UserMessage.FromString(blobs[body.user_message])
    if user.text:
        view.messages.append(ViewMessage("user", user.text))
    assistant: ViewMessage | None = None
    results: list[ViewToolResult] = []
    reasoning = ""  # a thinking step belongs to the assistant message that follows it

    def flush() -> None:
        nonlocal assistant, results
        if results:
            view.messages.append(ViewMessage("tool", tool_results=results))
            results = []
            assistant = None

    for step_id in body.steps:
        step = agent.ConversationStep.FromString(blobs[step_id])
        kind = step.WhichOneof("message")
        if kind == "thinking_message":
            flush()
            reasoning, assistant = step.thinking_message.text, None
        elif kind == "assistant_message":
            flush()
            assistant = ViewMessage("assistant", step.assistant_message.text, reasoning=reasoning)
            view.messages.append(assistant)
            reasoning = ""
        elif kind == "tool_call" and step.tool_call.HasField("mcp_tool_call"):
            call = step.tool_call.mcp_tool_call
            if assistant is None:
                assistant = ViewMessage("assistant", reasoning=reasoning)
                view.messages.append(assistant)
                reasoning = ""
            call_id = call.args.tool_call_id or step.tool_call.tool_call_id
            name = call.args.tool_name or call.args.name
            assistant.tool_calls.append(ViewToolCall(call_id, name, values.args_json(call.args.args)))
            if call.result.HasField("success"):
                text = "".join(c.text.text for c in call.result.success.content)
                results.append(ViewToolResult(call_id, name, text, call.result.success.is_error))
    flush()
