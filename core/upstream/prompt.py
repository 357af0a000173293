"""What every dialect derives the same way from a gateway ChatRequest: a message's text, the tools
Cursor is told about, the system context (system and developer text, then the instructions
that stand in for tool_choice and parallel_tool_calls, which no Cursor RPC has a switch for), and
the caller's files (text inlined, PDFs loaded for a dialect that carries them, refused otherwise)."""

from __future__ import annotations

from core.errors import invalid
from core.upstream import instructions
from core.upstream.files import PDF, FileLoader
from cursorgate.v1 import chat_pb2

Role = chat_pb2.Role
Mode = chat_pb2.ToolChoice.Mode


def text_of(message: chat_pb2.Message) -> str:
    return "\n".join(part.text for part in message.content if part.HasField("text"))


def declared_tools(request: chat_pb2.ChatRequest) -> list[chat_pb2.Tool]:
    """The tools Cursor is told about: none for tool_choice=none, only the named one when forced."""
    choice = request.tool_choice
    if choice.mode == Mode.MODE_NONE:
        return []
    if choice.mode == Mode.MODE_FUNCTION:
        return [t for t in request.tools if t.name == choice.function_name]
    return list(request.tools)


def system_context(request: chat_pb2.ChatRequest, tools: list[chat_pb2.Tool]) -> str:
    parts = [text_of(m) for m in request.messages if m.role in (Role.ROLE_SYSTEM, Role.ROLE_DEVELOPER)]
    choice = request.tool_choice
    if request.tools and choice.mode == Mode.MODE_NONE:
        parts.append(instructions.NO_TOOLS)
    elif choice.mode == Mode.MODE_FUNCTION:
        parts.append(instructions.FORCE_TOOL.format(name=choice.function_name))
    elif choice.mode == Mode.MODE_REQUIRED:
        parts.append(instructions.REQUIRE_TOOL)
    if tools and request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        parts.append(instructions.ONE_TOOL)
    return "\n\n".join(p for p in parts if p)


def inline_file(filename: str, mime_type: str, text: str) -> str:
    """A text file as the model reads it in the message: fenced by its name and type."""
    name = (filename or "attachment").replace('"', "'")
    return f'<file name="{name}" type="{mime_type}">\n{text}\n</file>'


async def resolve_files(
    request: chat_pb2.ChatRequest, files: FileLoader, *, carries_pdf: bool, dialect: str
) -> chat_pb2.ChatRequest:
    """The request with every file part settled, so a dialect meets only text, images and loaded
    PDFs: a text file becomes a text part (inline_file) in its place; a PDF becomes a FilePart with
    its bytes and type when the dialect carries files (`carries_pdf`), and is refused otherwise
    (INVALID_ARGUMENT naming the part and the dialect). The request itself is not changed."""
    if not any(part.HasField("file") for message in request.messages for part in message.content):
        return request
    out = chat_pb2.ChatRequest()
    out.CopyFrom(request)
    for i, message in enumerate(out.messages):
        for j, part in enumerate(message.content):
            if not part.HasField("file"):
                continue
            param = f"messages[{i}].content[{j}].file"
            loaded = await files.load(part.file, param)
            if loaded.text is not None:
                part.text = inline_file(loaded.filename, loaded.mime_type, loaded.text)
            elif carries_pdf and loaded.mime_type == PDF:
                part.file.CopyFrom(
                    chat_pb2.FilePart(filename=loaded.filename, mime_type=PDF, data=loaded.data)
                )
            else:
                raise invalid(
                    f"The {dialect} upstream dialect cannot carry {loaded.mime_type} files: Cursor's "
                    f"{dialect} request has no field for them. Send the document's text instead (a "
                    "text file or a text part), or use an account on the inference or agent dialect.",
                    param,
                )
    return out
