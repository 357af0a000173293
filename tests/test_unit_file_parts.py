"""core/upstream/files.py and prompt.resolve_files in process: what a file part becomes (text
inlined, PDF loaded, refusals with their codes and params), and that URL fetches obey the image
fetcher's rules (public hosts only, size cap). No network: a resolver table and a MockTransport."""

from __future__ import annotations

import base64

import httpx
import pytest

from core.errors import GatewayError
from core.upstream.files import FileLoader
from core.upstream.images import ImageLoader
from core.upstream.prompt import resolve_files
from cursorgate.v1 import chat_pb2, errors_pb2

PUBLIC = "8.8.8.8"  # only ever recorded by the MockTransport, never contacted
PDF = b"%PDF-1.7\n%%EOF\n"
PARAM = "messages[0].content[0].file"


async def public(host: str, port: int) -> list[str]:
    return [PUBLIC]


async def private(host: str, port: int) -> list[str]:
    return ["10.1.2.3"]


def loader(body: bytes = PDF, max_bytes: int = 1024, resolver: object = public) -> FileLoader:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body)))
    images = ImageLoader(1 << 20, 5.0, http, resolver=resolver)  # type: ignore[arg-type]
    return FileLoader(images, max_bytes)


def request_with(part: chat_pb2.FilePart, text: str = "") -> chat_pb2.ChatRequest:
    content = [chat_pb2.ContentPart(file=part)]
    if text:
        content.append(chat_pb2.ContentPart(text=text))
    return chat_pb2.ChatRequest(
        model="m", messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content=content)]
    )


async def refusal(files: FileLoader, part: chat_pb2.FilePart) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await files.load(part, PARAM)
    assert caught.value.param == PARAM
    return caught.value


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "mime", "text"),
    [
        (
            chat_pb2.FilePart(url=data_url("text/markdown", "# Ünïcode".encode())),
            "text/markdown",
            "# Ünïcode",
        ),
        (chat_pb2.FilePart(filename="main.rs", data=b"fn main() {}"), "text/plain", "fn main() {}"),
        (chat_pb2.FilePart(filename="a.ts", data=b"let x = 1"), "text/plain", "let x = 1"),
        (chat_pb2.FilePart(mime_type="application/ld+json", data=b"{}"), "application/ld+json", "{}"),
        (chat_pb2.FilePart(url=data_url("", b"\xef\xbb\xbfa,b"), filename="t.csv"), "text/plain", "a,b"),
        (chat_pb2.FilePart(url=data_url("application/octet-stream", PDF)), "application/pdf", None),
    ],
)
async def test_what_a_file_is(part: chat_pb2.FilePart, mime: str, text: str | None) -> None:
    loaded = await loader().load(part, PARAM)
    assert (loaded.mime_type, loaded.text) == (mime, text)


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (
            chat_pb2.FilePart(mime_type="application/pdf", data=b"not a pdf"),
            "The file is declared as application/pdf but is not a PDF.",
        ),
        (
            chat_pb2.FilePart(mime_type="text/plain", data=b"\xff\xfe\x00"),
            "The file is declared as text (text/plain) but is not UTF-8.",
        ),
        (
            chat_pb2.FilePart(filename="blob", data=b"\x00\x01"),
            "The file's type is unknown: give a filename with an extension or a media type "
            "(PDF and text files are accepted).",
        ),
        (
            chat_pb2.FilePart(mime_type="image/png", data=b"\x89PNG"),
            "Files of type image/png are not accepted: only PDF and text files are. "
            "Send images as image parts.",
        ),
        (
            chat_pb2.FilePart(url="data:text/plain,plain"),
            "File data URLs must be base64 encoded (data:application/pdf;base64,...).",
        ),
        (chat_pb2.FilePart(url="data:text/plain;base64,@@"), "The file's data URL is not valid base64."),
        (
            chat_pb2.FilePart(url="ftp://example.com/a.pdf"),
            "File URLs must be base64 data: URLs or http(s) URLs.",
        ),
        (chat_pb2.FilePart(filename="x.txt"), "A file part needs its data or a URL."),
    ],
)
async def test_bad_files_are_refused_naming_the_part(part: chat_pb2.FilePart, message: str) -> None:
    error = await refusal(loader(), part)
    assert (error.code, error.message) == (errors_pb2.ERROR_CODE_INVALID_REQUEST, message)


@pytest.mark.parametrize(
    "part",
    [
        chat_pb2.FilePart(mime_type="application/pdf", data=PDF + b"x" * 1024),
        chat_pb2.FilePart(url=data_url("application/pdf", PDF + b"x" * 1024)),
        chat_pb2.FilePart(url="https://files.example/a.pdf"),
    ],
)
async def test_over_the_limit_is_request_too_large(part: chat_pb2.FilePart) -> None:
    error = await refusal(loader(body=PDF + b"x" * 1024), part)
    assert error.code == errors_pb2.ERROR_CODE_REQUEST_TOO_LARGE
    assert error.message == "The file is larger than 1024 bytes (CURSORGATE_FILE_MAX_BYTES)."


# --- fetching by URL --------------------------------------------------------------------------


async def test_a_public_url_is_fetched() -> None:
    loaded = await loader().load(chat_pb2.FilePart(url="https://files.example/report.pdf"), PARAM)
    assert (loaded.mime_type, loaded.data) == ("application/pdf", PDF)


async def test_a_private_url_is_refused() -> None:
    error = await refusal(loader(resolver=private), chat_pb2.FilePart(url="http://intranet.example/a.pdf"))
    assert error.message == "File URLs must point to public hosts."


# --- resolve_files: per dialect -------------------------------------------------------------


async def test_text_file_is_inlined_in_place() -> None:
    part = chat_pb2.FilePart(filename='we"ird.txt', mime_type="text/plain", data=b"body")
    out = await resolve_files(request_with(part, "question"), loader(), carries_pdf=False, dialect="legacy")
    assert [p.text for p in out.messages[0].content] == [
        '<file name="we\'ird.txt" type="text/plain">\nbody\n</file>',
        "question",
    ]


async def test_pdf_is_loaded_where_carried_and_refused_elsewhere() -> None:
    request = request_with(chat_pb2.FilePart(filename="r.pdf", url=data_url("application/pdf", PDF)))
    out = await resolve_files(request, loader(), carries_pdf=True, dialect="inference")
    assert out.messages[0].content[0].file == chat_pb2.FilePart(
        filename="r.pdf", mime_type="application/pdf", data=PDF
    )
    assert request.messages[0].content[0].file.url.startswith("data:"), "the caller's request is untouched"
    with pytest.raises(GatewayError) as caught:
        await resolve_files(request, loader(), carries_pdf=False, dialect="legacy")
    assert caught.value.code == errors_pb2.ERROR_CODE_INVALID_REQUEST
    assert caught.value.param == PARAM
    assert caught.value.message.startswith("The legacy upstream dialect cannot carry application/pdf files")
