"""Structured outputs: the response-format instruction in the system context, and under `strict`
validation of the final answer (JSON Schema), one bounded repair round, then a clear error.

Cursor has no structured-output switch, so the schema travels as an instruction (a system
message, which every upstream builder reads into its system context). Under `strict` the answer's
text is buffered to the end, even on a stream: a conforming answer is only known once complete.
Reasoning and tool calls still pass through as they come; a turn that calls tools is not checked.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.json_format import MessageToDict

from core.errors import Code, GatewayError, invalid
from cursorgate.v1 import chat_pb2

Format = chat_pb2.ResponseFormat
FinishReason = chat_pb2.FinishReason

# The sentences the model is given. The simulator recognises these markers to play a compliant
# model (simulator/script.py), so change both together.
SCHEMA_OPEN = "<json-schema>"
SCHEMA_CLOSE = "</json-schema>"
JSON_SCHEMA_INSTRUCTION = (
    "Answer with one JSON value that conforms to the JSON Schema below, and nothing else: no prose, "
    "no Markdown, no code fences.{about}\n" + SCHEMA_OPEN + "\n{schema}\n" + SCHEMA_CLOSE
)
JSON_OBJECT_INSTRUCTION = (
    "Answer with one JSON object and nothing else: no prose, no Markdown, no code fences."
)
REPAIR_INSTRUCTION = (
    "Your previous answer did not conform to the required JSON Schema: {error} "
    "Answer again with only the corrected JSON value."
)

SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_SCHEMA_BYTES = 64 * 1024
# An error quoted back to the model and to the caller stays short.
MAX_ERROR_CHARS = 400
# ```json ... ``` (or bare ```), the whole answer; models add these despite being told not to.
FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```\s*$", re.DOTALL)

EventSource = Callable[[chat_pb2.ChatRequest], AsyncIterator[chat_pb2.ChatEvent]]


def wants_json(request: chat_pb2.ChatRequest) -> bool:
    return request.response_format.type in (Format.TYPE_JSON_OBJECT, Format.TYPE_JSON_SCHEMA)


def is_strict(request: chat_pb2.ChatRequest) -> bool:
    fmt = request.response_format
    return fmt.type == Format.TYPE_JSON_SCHEMA and fmt.strict


def schema_of(fmt: chat_pb2.ResponseFormat) -> dict[str, Any]:
    return MessageToDict(fmt.schema)


def validate_format(request: chat_pb2.ChatRequest) -> None:
    """Refuses formats no model could be held to: a bad name, an oversized or invalid schema."""
    fmt = request.response_format
    if fmt.type != Format.TYPE_JSON_SCHEMA:
        return
    if not SCHEMA_NAME.match(fmt.name):
        raise invalid(
            "The schema name must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'.",
            "response_format.json_schema.name",
        )
    if fmt.schema.ByteSize() > MAX_SCHEMA_BYTES:
        raise invalid(
            f"The response schema may be at most {MAX_SCHEMA_BYTES} bytes.",
            "response_format.json_schema.schema",
        )
    schema = schema_of(fmt)
    # jsonschema (about 3 MB) is imported by the first request that brings a schema.
    from jsonschema import Draft202012Validator, SchemaError, validators

    try:
        validators.validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as err:
        raise invalid(
            f"The response schema is not a valid JSON Schema: {_short(err.message)}",
            "response_format.json_schema.schema",
        ) from None


def instruction(fmt: chat_pb2.ResponseFormat) -> str:
    if fmt.type == Format.TYPE_JSON_OBJECT:
        return JSON_OBJECT_INSTRUCTION
    about = f" It is named `{fmt.name}`" + (f": {fmt.description}" if fmt.description else "") + "."
    schema = json.dumps(schema_of(fmt), separators=(",", ":"), sort_keys=True)
    return JSON_SCHEMA_INSTRUCTION.format(about=about, schema=schema)


def add_instruction(request: chat_pb2.ChatRequest) -> None:
    """Puts the format's instruction after the caller's leading system messages."""
    if not wants_json(request):
        return
    at = next(
        (
            i
            for i, m in enumerate(request.messages)
            if m.role not in (chat_pb2.ROLE_SYSTEM, chat_pb2.ROLE_DEVELOPER)
        ),
        len(request.messages),
    )
    message = chat_pb2.Message(role=chat_pb2.ROLE_SYSTEM)
    message.content.add(text=instruction(request.response_format))
    request.messages.insert(at, message)


def strip_fences(text: str) -> str:
    match = FENCE.match(text)
    return match.group(1).strip() if match else text.strip()


def check(text: str, schema: dict[str, Any]) -> tuple[str, str | None]:
    """(the answer without fences, None) if it conforms, else (the same, what is wrong)."""
    cleaned = strip_fences(text)
    try:
        value = json.loads(cleaned)
    except json.JSONDecodeError as err:
        return cleaned, f"it is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})."
    from jsonschema import Draft202012Validator, ValidationError, validators
    from jsonschema.exceptions import best_match

    error: ValidationError | None = best_match(
        validators.validator_for(schema, default=Draft202012Validator)(schema).iter_errors(value)
    )
    if error is None:
        return cleaned, None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return cleaned, f"at {where}: {_short(error.message)}"


def _short(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 3] + "..."


def repair_request(request: chat_pb2.ChatRequest, answer: str, error: str) -> chat_pb2.ChatRequest:
    """The same request, continued by the rejected answer and what was wrong with it."""
    repair = chat_pb2.ChatRequest()
    repair.CopyFrom(request)
    assistant = repair.messages.add(role=chat_pb2.ROLE_ASSISTANT)
    assistant.content.add(text=answer)
    user = repair.messages.add(role=chat_pb2.ROLE_USER)
    user.content.add(text=REPAIR_INSTRUCTION.format(error=error))
    return repair


class _Round:
    """One upstream answer under strict: passes reasoning and tool calls, holds text and the end."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.usage = chat_pb2.Usage()
        self.finish = FinishReason.FINISH_REASON_UNSPECIFIED
        self.called_tools = False

    def take(self, event: chat_pb2.ChatEvent) -> chat_pb2.ChatEvent | None:
        kind = event.WhichOneof("event")
        if kind == "text":
            self.text.append(event.text.text)
        elif kind == "usage":
            self.usage.CopyFrom(event.usage)
        elif kind == "finish":
            self.finish = event.finish.reason
        else:
            self.called_tools = self.called_tools or kind == "tool_call"
            return event
        return None


def _text_event(text: str) -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(text=chat_pb2.TextDelta(text=text))


async def strict_events(
    request: chat_pb2.ChatRequest, source: EventSource
) -> AsyncIterator[chat_pb2.ChatEvent]:
    """The events of a strict-format answer: text (once, validated) then usage and finish.

    `source` runs one upstream round (already shaped: stop sequences, max_tokens, usage).
    An answer cut short by max_tokens is passed on as it is (finish `length` tells the caller).
    """
    schema = schema_of(request.response_format)
    first = _Round()
    async with contextlib.aclosing(source(request)) as events:  # type: ignore[type-var]
        async for event in events:
            if (out := first.take(event)) is not None:
                yield out
    answer = "".join(first.text)
    usage, finish = first.usage, first.finish
    if not first.called_tools and finish != FinishReason.FINISH_REASON_LENGTH:
        answer, error = check(answer, schema)
        if error is not None:
            second = _Round()
            async with contextlib.aclosing(source(repair_request(request, answer, error))) as events:  # type: ignore[type-var]
                async for event in events:
                    if (out := second.take(event)) is not None:
                        yield out
            answer, error = check("".join(second.text), schema)
            usage = _added(first.usage, second.usage)
            finish = second.finish
            if error is not None and finish != FinishReason.FINISH_REASON_LENGTH:
                raise GatewayError(
                    Code.ERROR_CODE_OUTPUT_INVALID,
                    f"The model's answer did not conform to the response schema "
                    f"'{request.response_format.name}' after one repair round: {error}",
                )
    if answer:
        yield _text_event(answer)
    yield chat_pb2.ChatEvent(usage=usage)
    yield chat_pb2.ChatEvent(finish=chat_pb2.Finish(reason=finish))


def _added(a: chat_pb2.Usage, b: chat_pb2.Usage) -> chat_pb2.Usage:
    return chat_pb2.Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
        estimated=a.estimated or b.estimated,
    )
