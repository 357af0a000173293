"""What the simulator answers: a plan of frames and faults, derived from the request alone.

Directives: a line `sim: key=value ...` in the last user message. Keys:
  chunks=N        text frames (default 6)           delay_ms=N   pause before each frame
  first_ms=N      pause before the first frame       thinking=N   thinking frames (default 3 on -thinking)
  text=WORDS      reply text (underscores -> spaces) tools=a,b    call these offered tools
  chunk_chars=N   exactly `chunks` text frames of N characters each (filler text; for benchmarks)
  error=KIND      end with a Cursor error: auth, expired, rate_limited, usage_limit, outdated,
                  bad_model, deprecated, internal, unavailable (HTTP 503 before any frame)
  after=N         frames sent before error/break/stall/malformed (default 0)
  retry_after=S   retry hint on rate_limited        break=1 / stall=1 / malformed=1: the fault
  args=stream|whole  how tool-call arguments arrive (default stream: several cumulative frames)
  refuse_tools=once|always  answer in text although a tool call is required (once: until the
                  gateway's retry instruction is in the context)
Without directives: thinking frames for -thinking models, then a reply containing the last user
message verbatim; with tools offered and a tool named in the prompt, or its topic mentioned
(`get_current_weather` for "weather"), or forced by the gateway's tool_choice instruction, a call to
that tool with arguments built from its schema.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field

from aiserver.v1 import chat_pb2, tools_pb2
from core.upstream import instructions

Message = chat_pb2.StreamUnifiedChatResponseWithTools
MCP = tools_pb2.ClientSideToolV2.CLIENT_SIDE_TOOL_V2_MCP
HUMAN = chat_pb2.ConversationMessage.MessageType.MESSAGE_TYPE_HUMAN

_SIGNING_KEY = b"cursorgate-simulator"
DIRECTIVE = re.compile(r"^\s*sim:(.*)$", re.MULTILINE)


@dataclass
class Plan:
    frames: list[Message] = field(default_factory=list)
    delay_s: float = 0.0
    first_delay_s: float = 0.0
    # A fault after `after` frames: None, or error/break/stall/malformed.
    fault: str | None = None
    error: str = ""
    after: int = 0
    retry_after: float = 0.0


def directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in DIRECTIVE.findall(text):
        for token in line.split():
            key, _, value = token.partition("=")
            found[key.strip()] = value.strip()
    return found


def last_user_text(request: chat_pb2.StreamUnifiedChatRequest) -> str:
    for message in reversed(request.conversation):
        if message.type == HUMAN:
            return message.text
    return ""


def tool_call_id(name: str, n: int) -> str:
    """Ids the simulator can recognise when results come back (as Cursor checks its own)."""
    sig = hmac.new(_SIGNING_KEY, f"{name}\0{n}".encode(), hashlib.sha256).hexdigest()[:12]
    return f"toolu_sim{n}_{sig}"


def id_is_ours(call_id: str, name: str) -> bool:
    match = re.fullmatch(r"toolu_sim(\d+)_[0-9a-f]{12}", call_id)
    if match is None:
        return False
    return hmac.compare_digest(call_id, tool_call_id(name, int(match.group(1))))


def example_args(schema: dict[str, object]) -> dict[str, object]:
    """Arguments that satisfy the schema's top level: every required property, typed."""
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    names = list(required) if isinstance(required, list) else list(props)
    return {str(name): _example(props.get(name, {}), str(name)) for name in names}


def _example(schema: object, name: str) -> object:
    if not isinstance(schema, dict):
        return f"sim-{name}"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "object": example_args(schema),
        "null": None,
    }.get(str(kind), f"sim-{name}")


def chunks(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text) or 1))
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def text_frame(text: str) -> Message:
    return Message(stream_unified_chat_response=chat_pb2.StreamUnifiedChatResponse(text=text))


def thinking_frame(text: str) -> Message:
    thinking = chat_pb2.ConversationMessage.Thinking(text=text)
    return Message(stream_unified_chat_response=chat_pb2.StreamUnifiedChatResponse(thinking=thinking))


def call_frames(name: str, args: str, n: int, streamed: bool) -> list[Message]:
    call_id = tool_call_id(name, n)
    tool = tools_pb2.MCPParams.Tool(name=name, parameters=args, server_name="custom")

    def frame(raw: str, streaming: bool, last: bool) -> Message:
        return Message(
            client_side_tool_v2_call=tools_pb2.ClientSideToolV2Call(
                tool=MCP,
                tool_call_id=call_id,
                name=name,
                raw_args=raw,
                is_streaming=streaming,
                is_last_message=last,
                mcp_params=tools_pb2.MCPParams(tools=[tool]),
                tool_index=n,
                model_call_id=f"mc_sim_{n}",
            )
        )

    if not streamed:
        return [frame(args, False, True)]
    cuts = sorted({len(args) // 3, 2 * len(args) // 3, len(args)})
    return [frame(args[:cut], True, cut == len(args)) for cut in cuts if cut]


def chosen_tools(request: chat_pb2.StreamUnifiedChatRequest, opts: dict[str, str], prompt: str) -> list[str]:
    offered = [t.name for t in request.mcp_tools]
    if not offered:
        return []
    context = request.explicit_context.context
    if instructions.NO_TOOLS in context:
        return []
    refuse = opts.get("refuse_tools")
    if refuse == "always" or (refuse == "once" and instructions.TOOL_RETRY not in context):
        return []
    if "tools" in opts:
        return [t for t in opts["tools"].split(",") if t in offered]
    forced = re.search(instructions.FORCE_TOOL_PATTERN, context)
    if forced and forced.group(1) in offered:
        return [forced.group(1)]
    named = [t for t in offered if re.search(rf"\b{re.escape(t)}\b", prompt)]
    if not named:
        named = [t for t in offered if _topic_words(t) & set(re.findall(r"[a-z]+", prompt.lower()))]
    if not named and instructions.REQUIRE_TOOL in context:
        named = offered[:1]
    if instructions.ONE_TOOL in context:
        named = named[:1]
    return named


# Words of a tool's name that say nothing about its topic.
_GENERIC = frozenset(
    {"get", "set", "list", "fetch", "find", "current", "data", "info", "tool", "call", "make"}
)


def _topic_words(name: str) -> set[str]:
    """`get_current_weather` -> {"weather"}: what a prompt about the tool's subject would say."""
    return {w for w in re.split(r"[_\-]+", name.lower()) if len(w) >= 4 and w not in _GENERIC}


def answered_results(
    request: chat_pb2.StreamUnifiedChatRequest,
) -> list[chat_pb2.ConversationMessage.ToolResult]:
    """Tool results in the history after the last human message: the turn being answered."""
    results: list[chat_pb2.ConversationMessage.ToolResult] = []
    for message in reversed(request.conversation):
        if message.type == HUMAN and message.text.strip():
            break
        results.extend(message.tool_results)
    return results


def plan_for(request: chat_pb2.StreamUnifiedChatRequest, default_delay_ms: int = 0) -> Plan:
    prompt = last_user_text(request)
    opts = directives(prompt)
    model = request.model_details.model_name
    plan = Plan(
        delay_s=int(opts.get("delay_ms", default_delay_ms)) / 1000,
        first_delay_s=int(opts.get("first_ms", 0)) / 1000,
        after=int(opts.get("after", 0)),
        retry_after=float(opts.get("retry_after", 0)),
    )
    for fault in ("break", "stall", "malformed"):
        if opts.get(fault):
            plan.fault = fault
    if opts.get("error"):
        plan.fault, plan.error = "error", opts["error"]

    n_thinking = int(opts.get("thinking", 3 if model.endswith("-thinking") or request.thinking_level else 0))
    visible = DIRECTIVE.sub("", prompt).strip()
    for piece in chunks(f"Considering the request: {visible[:60]}", n_thinking) if n_thinking else []:
        plan.frames.append(thinking_frame(piece))

    results = answered_results(request)
    tools = [] if results else chosen_tools(request, opts, prompt)
    if tools:
        schemas = {t.name: t.parameters for t in request.mcp_tools}
        for n, name in enumerate(tools):
            schema = json.loads(schemas[name] or "{}")
            args = json.dumps(example_args(schema if isinstance(schema, dict) else {}))
            plan.frames += call_frames(name, args, n, opts.get("args", "stream") == "stream")
        return plan

    if "text" in opts:
        reply = opts["text"].replace("_", " ")
    elif results:
        shown = "; ".join(f"{r.tool_name} -> {r.result.mcp_result.result or r.content}" for r in results)
        reply = f"The tools answered: {shown}"
    else:
        reply = f"Simulated {model or 'model'} answer. You said: {visible}"
    n_chunks = int(opts.get("chunks", 6))
    if "chunk_chars" in opts:
        size = max(1, int(opts["chunk_chars"]))
        plan.frames += [text_frame(piece) for piece in fixed_chunks(n_chunks, size)]
        return plan
    plan.frames += [text_frame(piece) for piece in chunks(reply, n_chunks)]
    return plan


FILLER = "The quick brown fox jumps over the lazy dog. "


def fixed_chunks(n: int, size: int) -> list[str]:
    """`n` pieces of `size` characters of filler text (a steady, realistic token stream)."""
    text = FILLER * (n * size // len(FILLER) + 1)
    return [text[i * size : (i + 1) * size] for i in range(max(0, n))]
