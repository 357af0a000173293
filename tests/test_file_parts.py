"""File content parts end to end, on every dialect: OpenAI chat `file`, Responses `input_file` and
Anthropic `document` through the facade, core and the simulator. Text files arrive inlined in the
user's text; PDFs arrive as files on inference (file parts) and agent (documents) and are refused
on legacy (no field for them), in each API's own error shape."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import grpc
import httpx
import openai
import pytest
from grpc_status import rpc_status

from core.errors import error_info_from_status
from cursorgate.v1 import chat_pb2, chat_pb2_grpc, errors_pb2
from tests.procs import Stack

pytestmark = pytest.mark.every_dialect

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PDF_B64 = base64.b64encode(PDF).decode()
LEGACY_REFUSAL = (
    "The legacy upstream dialect cannot carry application/pdf files: Cursor's legacy request has no "
    "field for them. Send the document's text instead (a text file or a text part), or use an "
    "account on the inference or agent dialect."
)
# CURSORGATE_FILE_MAX_BYTES' default, 2 MiB.
TOO_LARGE = "The file is larger than 2097152 bytes (CURSORGATE_FILE_MAX_BYTES)."


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)


@pytest.fixture
def claude(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.root_url, api_key=stack.license, max_retries=0)


def last_user(stack: Stack) -> dict[str, Any]:
    view = stack.last_view()
    users: list[dict[str, Any]] = [m for m in view["messages"] if m["role"] == "user"]
    return users[-1]


def chat_file(file: dict[str, Any], text: str = "Summarize the file.") -> list[Any]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "file", "file": file}]}]


# --- text files: inlined on every dialect ---------------------------------------------------


def test_chat_text_file_reaches_cursor_inline(client: openai.OpenAI, stack: Stack) -> None:
    data = base64.b64encode(b"alpha line\nbeta line marker-f1").decode()
    reply = client.chat.completions.create(
        model="gpt-5.2",
        messages=chat_file({"filename": "notes.txt", "file_data": f"data:text/plain;base64,{data}"}),
    )
    assert reply.choices[0].finish_reason == "stop"
    user = last_user(stack)
    assert user["text"] == (
        'Summarize the file.\n<file name="notes.txt" type="text/plain">\n'
        "alpha line\nbeta line marker-f1\n</file>"
    )
    assert user["files"] == []


def test_chat_source_file_without_type_is_read_by_its_name(client: openai.OpenAI, stack: Stack) -> None:
    # Bare base64 and no media type: the .py extension makes it text.
    data = base64.b64encode(b"def f():\n    return 42\n").decode()
    client.chat.completions.create(
        model="gpt-5.2", messages=chat_file({"filename": "f.py", "file_data": data}, "Review")
    )
    assert last_user(stack)["text"] == (
        'Review\n<file name="f.py" type="text/plain">\ndef f():\n    return 42\n\n</file>'
    )


def test_responses_input_file_json_reaches_cursor_inline(client: openai.OpenAI, stack: Stack) -> None:
    data = base64.b64encode(b'{"city": "Oslo"}').decode()
    response = client.responses.create(
        model="gpt-5.2",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Read it"},
                    {
                        "type": "input_file",
                        "filename": "city.json",
                        "file_data": f"data:application/json;base64,{data}",
                    },
                ],
            }
        ],
    )
    assert response.status == "completed"
    assert (
        last_user(stack)["text"]
        == 'Read it\n<file name="city.json" type="application/json">\n{"city": "Oslo"}\n</file>'
    )


def test_anthropic_text_document_reaches_cursor_inline(claude: anthropic.Anthropic, stack: Stack) -> None:
    message = claude.messages.create(
        model="claude-4.5-sonnet",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "title": "memo",
                        "source": {"type": "text", "media_type": "text/plain", "data": "Meet at noon."},
                    },
                    {"type": "text", "text": "When is the meeting?"},
                ],
            }
        ],
    )
    assert message.stop_reason == "end_turn"
    assert last_user(stack)["text"] == (
        '<file name="memo" type="text/plain">\nMeet at noon.\n</file>\nWhen is the meeting?'
    )


# --- PDFs: carried on inference and agent, refused on legacy --------------------------------


def test_chat_pdf_is_carried_or_refused(client: openai.OpenAI, stack: Stack, dialect: str) -> None:
    messages = chat_file({"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF_B64}"})
    if dialect == "legacy":
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="gpt-5.2", messages=messages)
        assert info.value.status_code == 400
        assert info.value.body == {
            "message": LEGACY_REFUSAL,
            "type": "invalid_request_error",
            "param": "messages[0].content[1].file",
            "code": None,
        }
        return
    reply = client.chat.completions.create(model="gpt-5.2", messages=messages)
    assert reply.choices[0].finish_reason == "stop"
    user = last_user(stack)
    assert user["text"] == "Summarize the file."
    assert user["files"] == [
        {"filename": "report.pdf", "mime_type": "application/pdf", "data": PDF_B64, "size": len(PDF)}
    ]


def test_anthropic_pdf_document_is_carried_or_refused(
    claude: anthropic.Anthropic, stack: Stack, dialect: str
) -> None:
    content: Any = [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}},
        {"type": "text", "text": "What does it say?"},
    ]
    messages: Any = [{"role": "user", "content": content}]
    if dialect == "legacy":
        with pytest.raises(anthropic.BadRequestError) as info:
            claude.messages.create(model="claude-4.5-sonnet", max_tokens=100, messages=messages)
        assert info.value.status_code == 400
        assert info.value.body == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": LEGACY_REFUSAL},
        }
        return
    claude.messages.create(model="claude-4.5-sonnet", max_tokens=100, messages=messages)
    user = last_user(stack)
    assert user["text"] == "What does it say?"
    assert user["files"] == [
        {"filename": "", "mime_type": "application/pdf", "data": PDF_B64, "size": len(PDF)}
    ]


async def test_grpc_pdf_is_carried_or_refused(stack: Stack, dialect: str) -> None:
    request = chat_pb2.ChatRequest(
        model="gpt-5.2",
        messages=[
            chat_pb2.Message(
                role=chat_pb2.ROLE_USER,
                content=[
                    chat_pb2.ContentPart(text="grpc pdf"),
                    chat_pb2.ContentPart(
                        file=chat_pb2.FilePart(filename="a.pdf", mime_type="application/pdf", data=PDF)
                    ),
                ],
            )
        ],
    )
    metadata = (("authorization", f"Bearer {stack.license}"),)
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        if dialect == "legacy":
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Chat(request, metadata=metadata)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            detail = error_info_from_status(rpc_status.from_call(info.value))
            assert detail == errors_pb2.ErrorInfo(
                code=errors_pb2.ERROR_CODE_INVALID_REQUEST,
                message=LEGACY_REFUSAL,
                param="messages[0].content[1].file",
            )
            return
        reply = await stub.Chat(request, metadata=metadata)
    assert reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert last_user(stack)["files"] == [
        {"filename": "a.pdf", "mime_type": "application/pdf", "data": PDF_B64, "size": len(PDF)}
    ]


# --- refusals that do not depend on the dialect ---------------------------------------------


def test_chat_file_id_is_refused_with_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-5.2", messages=chat_file({"file_id": "file-abc123"}))
    assert info.value.body == {
        "message": "File ids are not supported: this gateway has no Files API. Send the file inline as "
        "'file_data' (a base64 data: URL such as data:application/pdf;base64,...).",
        "type": "invalid_request_error",
        "param": "messages[0].content[1].file.file_id",
        "code": "unsupported_value",
    }


def test_responses_file_id_is_refused_with_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(
            model="gpt-5.2",
            input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-xyz"}]}],
        )
    assert info.value.status_code == 400
    body: Any = info.value.body
    assert body["param"] == "input[0].content[0].file_id"
    assert body["message"].startswith("File ids are not supported: this gateway has no Files API.")


def test_anthropic_file_source_is_refused(claude: anthropic.Anthropic) -> None:
    content: Any = [{"type": "document", "source": {"type": "file", "file_id": "file_011"}}]
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(
            model="claude-4.5-sonnet", max_tokens=50, messages=[{"role": "user", "content": content}]
        )
    assert info.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "'messages[0].content[0].source.file_id': file ids are not supported: this gateway "
            "has no Files API. Send the document inline (a base64, text or url source).",
        },
    }


def test_oversize_file_is_413(stack: Stack) -> None:
    big = base64.b64encode(PDF + b"0" * (2 * 1024 * 1024)).decode()
    body = {
        "model": "gpt-5.2",
        "messages": chat_file({"filename": "big.pdf", "file_data": f"data:application/pdf;base64,{big}"}),
    }
    headers = {"Authorization": f"Bearer {stack.license}"}
    response = httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == 413
    assert response.json() == {
        "error": {
            "message": TOO_LARGE,
            "type": "invalid_request_error",
            "param": "messages[0].content[1].file",
            "code": "request_too_large",
        }
    }


def test_anthropic_oversize_document_is_413(claude: anthropic.Anthropic) -> None:
    big = base64.b64encode(PDF + b"0" * (2 * 1024 * 1024)).decode()
    content: Any = [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": big}}
    ]
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(
            model="claude-4.5-sonnet", max_tokens=50, messages=[{"role": "user", "content": content}]
        )
    assert info.value.status_code == 413
    assert info.value.body == {"type": "error", "error": {"type": "request_too_large", "message": TOO_LARGE}}


def test_binary_file_that_is_no_pdf_is_refused(client: openai.OpenAI) -> None:
    data = base64.b64encode(b"PK\x03\x04zipzip").decode()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-5.2",
            messages=chat_file({"filename": "a.zip", "file_data": f"data:application/zip;base64,{data}"}),
        )
    body: Any = info.value.body
    assert body["message"] == "Files of type application/zip are not accepted: only PDF and text files are."
    assert body["param"] == "messages[0].content[1].file"


def test_count_tokens_counts_a_documents_text(claude: anthropic.Anthropic) -> None:
    # 4000 characters of text -> 1000 tokens at 4 characters a token, plus the message's 4.
    content: Any = [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a" * 4000}}
    ]
    counted = claude.messages.count_tokens(
        model="claude-4.5-sonnet", messages=[{"role": "user", "content": content}]
    )
    assert counted.input_tokens == 1004


def test_anthropic_document_in_a_tool_result_follows_it(claude: anthropic.Anthropic, stack: Stack) -> None:
    """Claude Code's Read of a file answers with a document block inside tool_result."""
    tool: Any = {"name": "read", "description": "Read a file", "input_schema": {"type": "object"}}
    messages: Any = [
        {"role": "user", "content": "Read out.txt"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [
                        {"type": "text", "text": "read ok"},
                        {
                            "type": "document",
                            "title": "out.txt",
                            "source": {"type": "text", "media_type": "text/plain", "data": "file from tool"},
                        },
                    ],
                }
            ],
        },
    ]
    claude.messages.create(model="claude-4.5-sonnet", max_tokens=100, tools=[tool], messages=messages)
    view = stack.last_view()
    results = [r for m in view["messages"] for r in m["tool_results"]]
    assert [(r["id"], r["content"]) for r in results] == [("toolu_1", "read ok")]
    assert last_user(stack)["text"] == '<file name="out.txt" type="text/plain">\nfile from tool\n</file>'
