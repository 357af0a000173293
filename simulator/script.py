"""What the simulator answers: a plan of frames and faults, derived from the request alone.

The plan is dialect-neutral (text, thinking and tool-call frames); each simulated RPC renders it
on its own wire. Directives: a line `sim: key=value ...` in the last user message. Keys:
  chunks=N        text frames (default 6)           delay_ms=N   pause before each frame
  first_ms=N      pause before the first frame       thinking=N   thinking frames (default 3 on -thinking)
  text=WORDS      reply text (underscores -> spaces) tools=a,b    call these offered tools
  chunk_chars=N   exactly `chunks` text frames of N characters each (filler text; for benchmarks)
  error=KIND      end with a Cursor error: auth, expired, rate_limited, usage_limit, outdated,
                  bad_model, deprecated, internal, unavailable (HTTP 503 before any frame),
                  update_required, region, model_blocked, max_mode, account_closed, provider
                  too_large (resource_exhausted "message is larger than configured max")
  after=N         frames sent before error/break/stall/malformed (default 0)
  retry_after=S   retry hint on rate_limited        break=1 / stall=1 / malformed=1: the fault
  args=stream|whole  how tool-call arguments arrive (default stream: several cumulative frames)
  json=broken     under the gateway's JSON instruction, answer broken JSON (once: the repair
                  request's last user message carries no directive); json=always_broken keeps
                  doing so while any user message of the conversation says it; json=fenced wraps
                  a conforming answer in a ```json code fence
  refuse_tools=once|always  answer in text although a tool call is required (once: until the
                  gateway's retry instruction is in the context)
Without directives: thinking frames for -thinking models, then a reply containing the last user
message verbatim; with tools offered and a tool named in the prompt, or its topic mentioned
(`get_current_weather` for "weather"), or forced by the gateway's tool_choice instruction, a call to
that tool with arguments built from its schema. When the system context carries the gateway's JSON
instruction (core/chat/structured.py), the reply is JSON: an example of the schema, or an object.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field

from core.chat import structured
from core.upstream import instructions
from simulator.view import ChatView, ViewToolResult

_SIGNING_KEY = b"cursorgate-simulator"
DIRECTIVE = re.compile(r"^\s*sim:(.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Thinking:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    # The whole arguments as JSON text.
    args: str
    index: int
    # Streamed in several growing pieces (args=stream) or whole in one frame (args=whole).
    streamed: bool


Frame = Text | Thinking | ToolCall


@dataclass
class Plan:
    frames: list[Frame] = field(default_factory=list)
    delay_s: float = 0.0
    first_delay_s: float = 0.0
    # A fault after `after` frames: None, or error/break/stall/malformed.
    fault: str | None = None
    error: str = ""
    after: int = 0
    retry_after: float = 0.0
    # Token counts the simulated model reports (dialects that carry usage send them).
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0


def directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in DIRECTIVE.findall(text):
        for token in line.split():
            key, _, value = token.partition("=")
            found[key.strip()] = value.strip()
    return found


def tool_call_id(name: str, n: int) -> str:
    """Ids the simulator can recognise when results come back (as Cursor checks its own)."""
    sig = hmac.new(_SIGNING_KEY, f"{name}\0{n}".encode(), hashlib.sha256).hexdigest()[:12]
    return f"toolu_sim{n}_{sig}"


def id_is_ours(call_id: str, name: str) -> bool:
    match = re.fullmatch(r"toolu_sim(\d+)_[0-9a-f]{12}", call_id)
    if match is None:
        return False
    return hmac.compare_digest(call_id, tool_call_id(name, int(match.group(1))))


def forged_result(view: ChatView) -> ViewToolResult | None:
    """A tool result for a call the simulated model never made (Cursor refuses those)."""
    for result in view.answered_results():
        if not id_is_ours(result.id, result.name):
            return result
    return None


def example_args(schema: dict[str, object], root: dict[str, object] | None = None) -> dict[str, object]:
    """Arguments that satisfy the schema's top level: every required property, typed.

    Local `$ref`s (`#/$defs/X`, as pydantic writes nested models) resolve against `root`."""
    root = schema if root is None else root
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    names = list(required) if isinstance(required, list) else list(props)
    return {str(name): _example(props.get(name, {}), str(name), root) for name in names}


def _resolve(schema: object, root: dict[str, object]) -> object:
    for _ in range(8):  # refs to refs, but never a loop
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        target: object = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        schema = target
    return schema


def _example(schema: object, name: str, root: dict[str, object]) -> object:
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return f"sim-{name}"
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            typed = [o for o in options if _resolve(o, root) != {"type": "null"}]
            return _example((typed or options)[0], name, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        return example_args(schema, root)
    if kind == "array":
        low = schema.get("minItems")
        count = low if isinstance(low, int) and 0 < low <= 8 else 0
        return [_example(schema.get("items", {}), name, root) for _ in range(count)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(str(kind), f"sim-{name}")


BROKEN_JSON = '```json\n{"answer": "unterminated\n```'


def json_reply(view: ChatView, opts: dict[str, str], reply: str) -> str | None:
    """The reply of a model that follows the gateway's JSON instruction, or None without one."""
    context = view.system
    start, end = context.find(structured.SCHEMA_OPEN), context.find(structured.SCHEMA_CLOSE)
    if start >= 0 and end > start:
        schema = json.loads(context[start + len(structured.SCHEMA_OPEN) : end])
        value: object = _example(schema, "answer", schema) if isinstance(schema, dict) else {}
    elif structured.JSON_OBJECT_INSTRUCTION in context:
        value = {"answer": reply}
    else:
        return None
    every_user = "\n".join(m.text for m in view.messages if m.role == "user")
    if opts.get("json") == "broken" or directives(every_user).get("json") == "always_broken":
        return BROKEN_JSON
    text = json.dumps(value)
    return f"```json\n{text}\n```" if opts.get("json") == "fenced" else text


def chunks(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text) or 1))
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def chosen_tools(view: ChatView, opts: dict[str, str], prompt: str) -> list[str]:
    offered = [t.name for t in view.tools]
    if not offered:
        return []
    context = view.system
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


def plan_for(view: ChatView, default_delay_ms: int = 0) -> Plan:
    prompt = view.last_user_text()
    opts = directives(prompt)
    model = view.model
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

    n_thinking = int(opts.get("thinking", 3 if model.endswith("-thinking") or view.thinking else 0))
    visible = DIRECTIVE.sub("", prompt).strip()
    for piece in chunks(f"Considering the request: {visible[:60]}", n_thinking) if n_thinking else []:
        plan.frames.append(Thinking(piece))

    results = view.answered_results()
    tools = [] if results else chosen_tools(view, opts, prompt)
    if tools:
        schemas = {t.name: t.schema for t in view.tools}
        for n, name in enumerate(tools):
            args = json.dumps(example_args(schemas[name]))
            streamed = opts.get("args", "stream") == "stream"
            plan.frames.append(ToolCall(tool_call_id(name, n), name, args, n, streamed))
        return _counted(plan, view)

    if "text" in opts:
        reply = opts["text"].replace("_", " ")
    elif results:
        shown = "; ".join(f"{r.name} -> {'error: ' if r.is_error else ''}{r.content}" for r in results)
        reply = f"The tools answered: {shown}"
    else:
        reply = f"Simulated {model or 'model'} answer. You said: {visible}"
    reply = json_reply(view, opts, reply) or reply
    n_chunks = int(opts.get("chunks", 6))
    if "chunk_chars" in opts:
        size = max(1, int(opts["chunk_chars"]))
        plan.frames += [Text(piece) for piece in fixed_chunks(n_chunks, size)]
        return _counted(plan, view)
    plan.frames += [Text(piece) for piece in chunks(reply, n_chunks)]
    return _counted(plan, view)


def _counted(plan: Plan, view: ChatView) -> Plan:
    """Token counts a real model would report: a fixed, recognisable rule (3 characters a token,
    deliberately not the gateway's own estimate of 4, so tests can tell them apart)."""
    prompt_chars = len(view.system) + sum(len(m.text) + 8 for m in view.messages)
    prompt_chars += sum(len(t.name) + len(json.dumps(t.schema)) for t in view.tools)
    out = sum(len(f.text) for f in plan.frames if isinstance(f, Text))
    out += sum(len(f.args) + len(f.name) for f in plan.frames if isinstance(f, ToolCall))
    thought = sum(len(f.text) for f in plan.frames if isinstance(f, Thinking))
    plan.prompt_tokens = -(-prompt_chars // 3)
    plan.reasoning_tokens = -(-thought // 3)
    plan.completion_tokens = -(-out // 3) + plan.reasoning_tokens
    plan.cache_read_tokens = plan.prompt_tokens // 2 if len(view.messages) > 2 else 0
    return plan


FILLER = "The quick brown fox jumps over the lazy dog. "


def fixed_chunks(n: int, size: int) -> list[str]:
    """`n` pieces of `size` characters of filler text (a steady, realistic token stream)."""
    text = FILLER * (n * size // len(FILLER) + 1)
    return [text[i * size : (i + 1) * size] for i in range(max(0, n))]
