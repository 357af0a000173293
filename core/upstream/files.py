"""Turns a file content part (bytes, data: URL or http(s) URL) into its bytes, its type and, for a
text file, its text; what a dialect then does with it is prompt.resolve_files' job.

Fetching by URL goes through the image loader's guarded fetch (public hosts only, pinned address,
redirects checked, total deadline, bounded per license and host)."""

from __future__ import annotations

import base64
import binascii
import mimetypes
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.errors import Code, GatewayError, invalid
from core.upstream.images import ImageLoader
from cursorgate.v1 import chat_pb2

PDF = "application/pdf"
GENERIC = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
FETCH_FAILED = "The file could not be fetched from its URL."

# Types that are text whatever their major type says.
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/jsonl",
        "application/x-ndjson",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/typescript",
        "application/x-typescript",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/x-toml",
        "application/sql",
        "application/graphql",
        "application/x-sh",
        "application/x-shellscript",
        "application/x-python",
        "application/x-python-code",
        "application/x-httpd-php",
        "application/csv",
    }
)
# Extensions read as text when the declared type says nothing (source code and plain-text formats;
# some, such as .ts, mean something else to the mimetypes module).
TEXT_EXTENSIONS = frozenset(
    [
        ".txt",
        ".md",
        ".markdown",
        ".rst",
        ".adoc",
        ".org",
        ".log",
        ".csv",
        ".tsv",
        ".json",
        ".jsonl",
        ".ndjson",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".env",
        ".properties",
        ".xml",
        ".html",
        ".htm",
        ".css",
        ".scss",
        ".sass",
        ".less",
        ".svg",
        ".py",
        ".pyi",
        ".ipynb",
        ".ts",
        ".tsx",
        ".js",
        ".jsx",
        ".mjs",
        ".cjs",
        ".vue",
        ".svelte",
        ".go",
        ".rs",
        ".java",
        ".kt",
        ".kts",
        ".scala",
        ".groovy",
        ".gradle",
        ".swift",
        ".m",
        ".mm",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".cxx",
        ".hpp",
        ".hh",
        ".cs",
        ".fs",
        ".vb",
        ".rb",
        ".php",
        ".pl",
        ".pm",
        ".lua",
        ".r",
        ".jl",
        ".dart",
        ".ex",
        ".exs",
        ".erl",
        ".hrl",
        ".hs",
        ".ml",
        ".mli",
        ".clj",
        ".cljs",
        ".elm",
        ".nim",
        ".zig",
        ".sh",
        ".bash",
        ".zsh",
        ".fish",
        ".ps1",
        ".bat",
        ".cmd",
        ".sql",
        ".graphql",
        ".proto",
        ".tf",
        ".hcl",
        ".dockerfile",
        ".make",
        ".mk",
        ".cmake",
        ".tex",
        ".bib",
        "Dockerfile",
        "Makefile",
    ]
)


@dataclass(frozen=True, slots=True)
class LoadedFile:
    filename: str
    mime_type: str
    data: bytes
    # The decoded text of a text file; None for a binary one.
    text: str | None


def is_text_type(mime: str) -> bool:
    return mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith(("+json", "+xml", "+yaml"))


def _base(mime: str) -> str:
    return mime.split(";", 1)[0].strip().lower()


def _by_name(filename: str) -> str:
    """The type a filename suggests: text/plain for a text extension, else what mimetypes says."""
    path = PurePosixPath(filename)
    if path.suffix.lower() in TEXT_EXTENSIONS or path.name in TEXT_EXTENSIONS:
        return "text/plain"
    guessed, _ = mimetypes.guess_type(path.name)
    return _base(guessed or "")


class FileLoader:
    def __init__(self, images: ImageLoader, max_bytes: int) -> None:
        self.images = images
        # CURSORGATE_FILE_MAX_BYTES: per file, decoded or fetched.
        self.max_bytes = max_bytes

    def _too_large(self, param: str) -> GatewayError:
        return GatewayError(
            Code.ERROR_CODE_REQUEST_TOO_LARGE,
            f"The file is larger than {self.max_bytes} bytes (CURSORGATE_FILE_MAX_BYTES).",
            param=param,
        )

    async def load(self, part: chat_pb2.FilePart, param: str) -> LoadedFile:
        declared = _base(part.mime_type)
        if part.HasField("data"):
            data = part.data
        elif part.url.startswith("data:"):
            header, data = self._decode_data_url(part.url, param)
            declared = declared if declared not in GENERIC else header
        elif part.url.startswith(("http://", "https://")):
            data = await self.images.fetch(
                part.url,
                param,
                max_bytes=self.max_bytes,
                failed=FETCH_FAILED,
                what="file",
                oversize=self._too_large(param),
            )
        elif not part.url:
            raise invalid("A file part needs its data or a URL.", param)
        else:
            raise invalid("File URLs must be base64 data: URLs or http(s) URLs.", param)
        if len(data) > self.max_bytes:
            raise self._too_large(param)
        return self._classify(part.filename, declared, data, param)

    def _decode_data_url(self, url: str, param: str) -> tuple[str, bytes]:
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise invalid("File data URLs must be base64 encoded (data:application/pdf;base64,...).", param)
        if len(payload) > self.max_bytes * 4 // 3 + 4:
            raise self._too_large(param)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("The file's data URL is not valid base64.", param) from None
        return _base(header.removeprefix("data:").removesuffix(";base64")), data

    @staticmethod
    def _classify(filename: str, declared: str, data: bytes, param: str) -> LoadedFile:
        mime = declared
        if mime in GENERIC:
            mime = PDF if data.startswith(b"%PDF-") else _by_name(filename) or "application/octet-stream"
        if mime == PDF:
            if not data.startswith(b"%PDF-"):
                raise invalid("The file is declared as application/pdf but is not a PDF.", param)
            return LoadedFile(filename, PDF, data, None)
        if mime in GENERIC:
            raise invalid(
                "The file's type is unknown: give a filename with an extension or a media type "
                "(PDF and text files are accepted).",
                param,
            )
        if not is_text_type(mime):
            hint = " Send images as image parts." if mime.startswith("image/") else ""
            raise invalid(f"Files of type {mime} are not accepted: only PDF and text files are.{hint}", param)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise invalid(f"The file is declared as text ({mime}) but is not UTF-8.", param) from None
        return LoadedFile(filename, mime, data, text)
