"""JSON values <-> serialized google.protobuf.Value, the encoding of MCP tool schemas and arguments
on the agent wire (agent-protocol.md §3.3, §3.5)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError


def encode(obj: Any) -> bytes:
    """A JSON value (dict, list, str, number, bool, None) as Value bytes."""
    value = struct_pb2.Value()
    json_format.ParseDict(obj, value)
    return value.SerializeToString()


def decode(data: bytes) -> Any:
    """Value bytes as a JSON value. Bytes that are not a Value are read as UTF-8 JSON text, then as
    a plain string ([OMP]/[PYC] fall back the same way), so argument data is never dropped."""
    try:
        value = struct_pb2.Value.FromString(data)
    except DecodeError:
        value = None
    if value is not None and value.WhichOneof("kind") is not None:
        return _ints(json_format.MessageToDict(value))
    if not data:
        return None
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _ints(obj: Any) -> Any:
    """Value numbers are doubles; whole ones go back to JSON as integers (1, not 1.0)."""
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < 2**53:
        return int(obj)
    if isinstance(obj, dict):
        return {k: _ints(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ints(v) for v in obj]
    return obj


def args_json(args: Any) -> str:
    """McpArgs.args (map name -> Value bytes) as the JSON object text of an OpenAI tool call."""
    return json.dumps({key: decode(raw) for key, raw in args.items()}, ensure_ascii=False)


def args_map(arguments: str) -> dict[str, bytes]:
    """A tool call's JSON arguments as McpArgs.args; non-object JSON goes under "args"."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        parsed = {"args": arguments}
    if not isinstance(parsed, dict):
        parsed = {"args": parsed}
    return {str(key): encode(value) for key, value in parsed.items()}
