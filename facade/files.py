"""OpenAI's file parts (Chat Completions `file`, Responses `input_file`) -> a cursorgate FilePart.

Only the shape is translated here; core decodes, fetches, checks size and type, and decides per
upstream dialect (core/upstream/prompt.py resolve_files)."""

from __future__ import annotations

from cursorgate.v1 import chat_pb2
from facade.errors import OpenAIError

NO_FILES_API = (
    "File ids are not supported: this gateway has no Files API. Send the file inline as "
    "'file_data' (a base64 data: URL such as data:application/pdf;base64,...)."
)


def openai_file(
    param: str,
    *,
    file_data: str | None,
    file_id: str | None,
    filename: str | None,
    file_url: str | None = None,
) -> chat_pb2.FilePart:
    """`param` names the part's object (chat: `messages[i].content[j].file`, Responses: the part)."""
    if file_id and not file_data and not file_url:
        raise OpenAIError(400, NO_FILES_API, param=f"{param}.file_id", code="unsupported_value")
    part = chat_pb2.FilePart(filename=filename or "")
    if file_data:
        # Some clients send bare base64; core reads its type from the filename or the bytes.
        part.url = file_data if file_data.startswith("data:") else f"data:;base64,{file_data}"
    elif file_url:
        part.url = file_url
    else:
        raise OpenAIError(400, "A file part needs 'file_data'.", param=f"{param}.file_data")
    return part
