"""One agent Run's conversation with Cursor: server messages -> ChatEvents plus the replies the
Run waits for (exec results, KV acks, interaction answers), queued in `outbox` for the driver.

Every request Cursor makes on the stream is answered at once, whatever it is: an unanswered exec,
KV or interaction query stalls a Run for good (agent-protocol.md §3.5-3.7). The gateway never runs
code: Cursor's built-in tools (shell, read, write, ...) get a typed rejection, kinds this schema
does not know an ExecClientControlMessage.throw. A caller tool call (mcp_args) becomes an OpenAI
tool call and is answered with the handoff placeholder, so the model ends its turn (sub2api's
strategy, §4.4); the caller's result arrives in the next request's replayed history.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from google.protobuf import unknown_fields

from agent.v1 import agent_pb2 as agent
from core.upstream.agent import values
from core.upstream.agent.request import PROVIDER, BlobStore
from cursorgate.v1 import chat_pb2

log = logging.getLogger("cursorgate.upstream")

HANDOFF = (
    "Tool call received and handed off to the external client for execution. Do not retry or call "
    "it again; end the turn. The result will be provided in the next request."
)
REJECTED = (
    "This tool is not available: the client runs no code and has no workspace. "
    "Use one of the client's own tools, or answer in text."
)
NOT_SUPPORTED = "Not supported by this client."

# Interaction queries approved as the CLI does (hosted search and fetch run on Cursor's side) and
# declined (mode switches, questions to a user who is not there, plans), by field number (§4.4).
_APPROVE = frozenset({2, 5, 6, 8, 9})


@dataclass(slots=True)
class _Call:
    index: int
    id: str
    name: str
    announced: bool = False


def _text_result(text: str) -> agent.McpResult:
    result = agent.McpResult()
    result.success.content.add().text.text = text
    return result


class AgentExchange:
    """Stateful per Run. `skipped` counts server messages this schema does not know."""

    def __init__(
        self,
        opening: agent.AgentClientMessage,
        store: BlobStore,
        tools: list[agent.McpToolDefinition],
        max_calls: int | None = None,
    ) -> None:
        self._opening = opening
        self.store = store
        self.tools = tools
        self._names = {t.name for t in tools}
        self._max_calls = max_calls
        self._calls: dict[str, _Call] = {}
        # After a caller tool call the model only winds the turn down ("waiting for the result"):
        # that text is not part of the answer the caller gets.
        self._handed_off = False
        self.outbox: list[Any] = []
        self.done = False
        self.skipped: Counter[str] = Counter()
        self.suppressed = 0
        self.checkpoint: agent.ConversationStateStructure | None = None

    def opening(self) -> list[Any]:
        return [self._opening]

    def heartbeat(self) -> Any | None:
        return agent.AgentClientMessage(client_heartbeat=agent.ClientHeartbeat())

    def finish(self) -> list[chat_pb2.ChatEvent]:
        if self.skipped:
            log.info("agent run: skipped unknown messages %s", dict(self.skipped))
        return []

    def _skip(self, what: str) -> list[chat_pb2.ChatEvent]:
        self.skipped[what] += 1
        return []

    def feed(self, frame: agent.AgentServerMessage) -> list[chat_pb2.ChatEvent]:
        kind = frame.WhichOneof("message")
        if kind == "interaction_update":
            return self._update(frame.interaction_update)
        if kind == "exec_server_message":
            return self._exec(frame.exec_server_message)
        if kind == "kv_server_message":
            self._kv(frame.kv_server_message)
            return []
        if kind == "interaction_query":
            self._query(frame.interaction_query)
            return []
        if kind == "conversation_checkpoint_update":
            # Kept for diagnostics only: the next request replays history instead (stateless).
            self.checkpoint = frame.conversation_checkpoint_update
            return []
        if kind == "exec_server_control_message":
            return []  # abort of an exec: nothing of ours runs
        return self._skip(f"server:{_unknown(frame)}")

    # --- interaction updates -> events

    def _update(self, update: agent.InteractionUpdate) -> list[chat_pb2.ChatEvent]:
        kind = update.WhichOneof("message")
        if kind == "text_delta":  # the hot path
            text = update.text_delta.text
            if not text:
                return []
            if self._handed_off:
                self.suppressed += len(text)
                return []
            return [chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=text))]
        if kind == "thinking_delta":
            text = update.thinking_delta.text
            if not text or self._handed_off:
                return []
            return [chat_pb2.ChatEvent(reasoning=chat_pb2.ReasoningDelta(text=text))]
        if kind in ("partial_tool_call", "tool_call_started"):
            # Progress: the call's id and name reach the caller before its arguments are complete.
            tool_call = getattr(update, kind).tool_call
            if tool_call.HasField("mcp_tool_call"):
                args = tool_call.mcp_tool_call.args
                return self._announce(
                    args.tool_call_id or tool_call.tool_call_id, args.tool_name or args.name
                )
            return []
        if kind == "turn_ended":
            self.done = True
            return [chat_pb2.ChatEvent(usage=usage_of(update.turn_ended))]
        if kind is None:
            return self._skip(f"update:{_unknown(update)}")
        # thinking_completed, tool_call_completed, token_delta (a UI counter, never usage),
        # heartbeat (liveness), step_started/completed: nothing for the caller.
        return []

    def _announce(self, call_id: str, name: str) -> list[chat_pb2.ChatEvent]:
        if not call_id or name not in self._names:
            return []
        call = self._call(call_id, name)
        if call is None or call.announced:
            return []
        call.announced = True
        return [chat_pb2.ChatEvent(tool_call=chat_pb2.ToolCallDelta(index=call.index, id=call.id, name=name))]

    def _call(self, call_id: str, name: str) -> _Call | None:
        call = self._calls.get(call_id)
        if call is None:
            if self._max_calls is not None and len(self._calls) >= self._max_calls:
                return None  # parallel_tool_calls=false: only the first call is passed on
            call = self._calls[call_id] = _Call(len(self._calls), call_id, name)
        return call

    # --- exec requests -> replies

    def _reply(self, exec_msg: agent.ExecServerMessage, **result: Any) -> None:
        reply = agent.ExecClientMessage(id=exec_msg.id, exec_id=exec_msg.exec_id, **result)
        self.outbox.append(agent.AgentClientMessage(exec_client_message=reply))

    def _exec(self, exec_msg: agent.ExecServerMessage) -> list[chat_pb2.ChatEvent]:
        kind = exec_msg.WhichOneof("message")
        if kind == "mcp_args":
            return self._mcp(exec_msg)
        if kind == "request_context_args":
            context = agent.RequestContext(tools=self.tools, web_search_enabled=False)
            context.env.time_zone = "UTC"
            self._reply(
                exec_msg,
                request_context_result=agent.RequestContextResult(
                    success=agent.RequestContextSuccess(request_context=context)
                ),
            )
        elif kind == "mcp_state_exec_args":
            wanted = set(exec_msg.mcp_state_exec_args.server_identifiers)
            servers = []
            if not wanted or PROVIDER in wanted:
                servers.append(
                    agent.McpStateServer(
                        server_name=PROVIDER, server_identifier=PROVIDER, tools=self.tools, status="connected"
                    )
                )
            self._reply(
                exec_msg,
                mcp_state_exec_result=agent.McpStateExecResult(
                    success=agent.McpStateSuccess(servers=servers)
                ),
            )
        elif kind in _PRECHECKS:
            # [PYC] answers true: the exec that may follow is rejected anyway.
            self._reply(exec_msg, **{_PRECHECKS[kind]: agent.AllowlistPrecheckResult(allowlisted=True)})
        elif kind in _REJECTIONS:
            self._reply(exec_msg, **{_REJECTIONS[kind][0]: _REJECTIONS[kind][1](exec_msg)})
            if kind == "shell_stream_args":
                control = agent.ExecClientControlMessage(
                    stream_close=agent.ExecClientStreamClose(id=exec_msg.id)
                )
                self.outbox.append(agent.AgentClientMessage(exec_client_control_message=control))
            self.skipped[f"builtin:{kind}"] += 1
        else:
            # A kind this schema does not know: fail it explicitly rather than leave it waiting.
            throw = agent.ExecClientThrow(id=exec_msg.id, error=NOT_SUPPORTED, error_code="unsupported")
            control = agent.ExecClientControlMessage(throw=throw)
            self.outbox.append(agent.AgentClientMessage(exec_client_control_message=control))
            self._skip(f"exec:{_unknown(exec_msg)}")
        return []

    def _mcp(self, exec_msg: agent.ExecServerMessage) -> list[chat_pb2.ChatEvent]:
        args = exec_msg.mcp_args
        name = args.tool_name or args.name
        if name not in self._names:
            # Handing off a call the caller never declared would promise a result that never comes.
            not_found = agent.McpToolNotFound(name=name, available_tools=sorted(self._names))
            self._reply(exec_msg, mcp_result=agent.McpResult(tool_not_found=not_found))
            return []
        self._reply(exec_msg, mcp_result=_text_result(HANDOFF))
        self._handed_off = True
        call_id = args.tool_call_id or f"toolu_{uuid.uuid4().hex[:16]}"  # [PYC]'s fallback shape
        call = self._call(call_id, name)
        if call is None:
            return []
        delta = chat_pb2.ToolCallDelta(index=call.index, arguments=values.args_json(args.args))
        if not call.announced:
            call.announced = True
            delta.id, delta.name = call.id, name
        return [chat_pb2.ChatEvent(tool_call=delta)]

    # --- KV and interaction queries

    def _kv(self, kv: agent.KvServerMessage) -> None:
        kind = kv.WhichOneof("message")
        reply = agent.KvClientMessage(id=kv.id)
        if kind == "get_blob_args":
            data = self.store.get(kv.get_blob_args.blob_id)
            reply.get_blob_result.SetInParent()
            if data is not None:
                reply.get_blob_result.blob_data = data
        elif kind == "set_blob_args":
            self.store.set(kv.set_blob_args.blob_id, kv.set_blob_args.blob_data)
            reply.set_blob_result.SetInParent()
        else:
            self._skip(f"kv:{_unknown(kv)}")
            reply.set_blob_result.error.message = NOT_SUPPORTED
        self.outbox.append(agent.AgentClientMessage(kv_client_message=reply))

    def _query(self, query: agent.InteractionQuery) -> None:
        kind = query.WhichOneof("query")
        if kind is None:
            # A newer kind: answered "approved" under its own field number ([SUB]), built from the
            # unknown field so the runtime serializes it like any other.
            number = _unknown_number(query)
            self._skip(f"query:{number}")
            if number is None:
                return
            raw = agent.InteractionResponse(id=query.id).SerializeToString() + _field(number, b"\x0a\x00")
            response = agent.InteractionResponse.FromString(raw)
        else:
            response = agent.InteractionResponse(id=query.id)
            number = query.DESCRIPTOR.fields_by_name[kind].number
            field = response.DESCRIPTOR.fields_by_number[number].name
            target = getattr(response, field)
            if field == "ask_question_interaction_response":
                target.result.rejected.reason = NOT_SUPPORTED
            elif field == "create_plan_request_response":
                target.result.error.error = NOT_SUPPORTED
            elif field == "setup_vm_environment_result":
                target.success.SetInParent()
            elif number in _APPROVE:
                target.approved.SetInParent()
            else:
                target.rejected.reason = NOT_SUPPORTED
        self.outbox.append(agent.AgentClientMessage(interaction_response=response))


def usage_of(ended: agent.TurnEndedUpdate) -> chat_pb2.Usage:
    """turn_ended's counts as the gateway's usage. input_tokens is taken as the whole prompt,
    cache reads included (a captured turn: input 388 564 with cache_read 346 112)."""
    prompt = int(ended.input_tokens)
    completion = int(ended.output_tokens)
    return chat_pb2.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        reasoning_tokens=int(ended.reasoning_tokens),
        cache_read_tokens=int(ended.cache_read_tokens),
        cache_write_tokens=int(ended.cache_write_tokens),
        estimated=False,
    )


def _path_rejected(field: str) -> Any:
    def make(exec_msg: agent.ExecServerMessage) -> Any:
        path = getattr(getattr(exec_msg, field), "path", "")
        return agent.PathRejected(path=path, reason=REJECTED)

    return make


def _shell_rejected(field: str) -> Any:
    def make(exec_msg: agent.ExecServerMessage) -> agent.ShellRejected:
        args = getattr(exec_msg, field)
        return agent.ShellRejected(
            command=args.command, working_directory=args.working_directory, reason=REJECTED
        )

    return make


# exec kind -> (result field, rejection). The rejected variant of each result, where it has one
# ([OMP] numbers; grep and fetch have only an error variant).
_REJECTIONS: dict[str, tuple[str, Any]] = {
    "shell_args": ("shell_result", lambda m: agent.ShellResult(rejected=_shell_rejected("shell_args")(m))),
    "shell_stream_args": (
        "shell_stream",
        lambda m: agent.ShellStream(rejected=_shell_rejected("shell_stream_args")(m)),
    ),
    "background_shell_spawn_args": (
        "background_shell_spawn_result",
        lambda m: agent.BackgroundShellSpawnResult(
            rejected=_shell_rejected("background_shell_spawn_args")(m)
        ),
    ),
    "write_args": ("write_result", lambda m: agent.WriteResult(rejected=_path_rejected("write_args")(m))),
    "delete_args": ("delete_result", lambda m: agent.DeleteResult(rejected=_path_rejected("delete_args")(m))),
    "read_args": ("read_result", lambda m: agent.ReadResult(rejected=_path_rejected("read_args")(m))),
    "redacted_read_args": (
        "redacted_read_result",
        lambda m: agent.ReadResult(rejected=agent.PathRejected(reason=REJECTED)),
    ),
    "ls_args": ("ls_result", lambda m: agent.LsResult(rejected=_path_rejected("ls_args")(m))),
    "diagnostics_args": (
        "diagnostics_result",
        lambda m: agent.DiagnosticsResult(rejected=_path_rejected("diagnostics_args")(m)),
    ),
    "grep_args": ("grep_result", lambda m: agent.GrepResult(error=agent.GrepError(error=REJECTED))),
    "fetch_args": (
        "fetch_result",
        lambda m: agent.FetchResult(error=agent.FetchError(url=m.fetch_args.url, error=REJECTED)),
    ),
    "list_mcp_resources_exec_args": (
        "list_mcp_resources_exec_result",
        lambda m: agent.ListMcpResourcesResult(rejected=agent.ReasonRejected(reason=REJECTED)),
    ),
    "read_mcp_resource_exec_args": (
        "read_mcp_resource_exec_result",
        lambda m: agent.ReadMcpResourceResult(
            rejected=agent.UriRejected(uri=m.read_mcp_resource_exec_args.uri, reason=REJECTED)
        ),
    ),
}

_PRECHECKS = {
    "shell_allowlist_precheck_args": "shell_allowlist_precheck_result",
    "mcp_allowlist_precheck_args": "mcp_allowlist_precheck_result",
    "web_fetch_allowlist_precheck_args": "web_fetch_allowlist_precheck_result",
}


def _unknown_number(message: Any) -> int | None:
    found = unknown_fields.UnknownFieldSet(message)
    return found[0].field_number if len(found) else None


def _unknown(message: Any) -> str:
    number = _unknown_number(message)
    return str(number) if number is not None else "empty"


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field's bytes: the one place the wire format is written by hand."""
    tag = (number << 3) | 2
    return _varint(tag) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
