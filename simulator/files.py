"""Files the simulated Cursor accepts (RunInference file parts, agent documents), checked as
strictly as a model provider would: a declared media type it reads (PDF, plain text), bytes that
are what the type says, no empty file. Anything else ends the call with INVALID_ARGUMENT."""

from __future__ import annotations

import base64

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from simulator.view import ViewFile

ACCEPTED = frozenset({"application/pdf", "text/plain"})


def check_file(data: bytes, mime_type: str, filename: str, where: str) -> ViewFile:
    if mime_type not in ACCEPTED:
        raise ConnectError(Code.INVALID_ARGUMENT, f"{where}: unsupported file media type {mime_type!r}")
    if not data:
        raise ConnectError(Code.INVALID_ARGUMENT, f"{where}: empty file")
    if mime_type == "application/pdf" and not data.startswith(b"%PDF-"):
        raise ConnectError(Code.INVALID_ARGUMENT, f"{where}: file data is not a PDF")
    if mime_type == "text/plain":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConnectError(Code.INVALID_ARGUMENT, f"{where}: text file is not UTF-8") from None
    return ViewFile(filename, mime_type, base64.b64encode(data).decode(), len(data))
