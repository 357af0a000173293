"""Structured-output requests of every OpenAI surface -> `cursorgate.v1.ResponseFormat`.

Chat Completions nests the schema (`response_format.json_schema.schema`), the Responses API
flattens it (`text.format.schema`); both end up here. Core conveys and enforces it.
"""

from __future__ import annotations

from typing import Any, Literal

from google.protobuf import struct_pb2

from cursorgate.v1 import chat_pb2

FormatType = Literal["text", "json_object", "json_schema"]

TYPES: dict[str, chat_pb2.ResponseFormat.Type] = {
    "text": chat_pb2.ResponseFormat.TYPE_TEXT,
    "json_object": chat_pb2.ResponseFormat.TYPE_JSON_OBJECT,
    "json_schema": chat_pb2.ResponseFormat.TYPE_JSON_SCHEMA,
}


def to_response_format(
    kind: FormatType,
    *,
    name: str = "",
    description: str | None = None,
    schema: dict[str, Any] | None = None,
    strict: bool | None = None,
) -> chat_pb2.ResponseFormat:
    out = chat_pb2.ResponseFormat(type=TYPES[kind])
    if kind == "json_schema":
        out.name = name
        out.description = description or ""
        out.strict = bool(strict)
        struct = struct_pb2.Struct()
        struct.update(schema or {})
        out.schema.CopyFrom(struct)
    return out
