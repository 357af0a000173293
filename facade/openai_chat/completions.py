"""The legacy `POST /v1/completions`: a prompt becomes one user message of a chat, and the
answer a `text_completion`. Translation only; the chat path does the rest.

Only what maps onto a chat is accepted: one prompt (a string, or a list of one), n=1; `echo`
prepends the prompt. `suffix`, `logprobs` and `best_of` > 1 get a 400 that says so.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from cursorgate.v1 import chat_pb2
from facade.context import core_of, metadata_of, settings_of
from facade.core_client import request_id_from
from facade.errors import OpenAIError, invalid_unicode
from facade.guard import CLIENT_CLOSED, ClientGone, await_core
from facade.openai_chat.convert import DONE, FINISH_REASONS, to_chat_request, usage_dict
from facade.openai_chat.routes import ERROR_RESPONSES
from facade.openai_chat.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest
from facade.responses import OrjsonResponse
from facade.sse import frame, open_stream

router = APIRouter()


def new_completion_id() -> str:
    return f"cmpl-{os.urandom(12).hex()}"


def to_chat(body: CompletionRequest) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=body.model,
        messages=[ChatMessage(role="user", content=body.text)],
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        user=body.user,
    )


def _choice(text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}


def to_text_completion(
    response: chat_pb2.ChatResponse, *, completion_id: str, created: int, model: str, prefix: str
) -> dict[str, Any]:
    finish = FINISH_REASONS.get(response.finish_reason, "stop")
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": response.model or model,
        "choices": [_choice(prefix + response.content, finish)],
        "usage": usage_dict(response.usage),
    }


class TextCompletionStream:
    """ChatEvents -> `text_completion` chunks (a `facade.sse.StreamTranslator`). Reasoning and
    tool calls have no place in this API and are left out."""

    __slots__ = ("_base", "_prefix", "_usage", "include_usage")

    def __init__(self, *, completion_id: str, model: str, include_usage: bool, prefix: str) -> None:
        self._base = {
            "id": completion_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        self.include_usage = include_usage
        self._prefix = prefix
        self._usage: chat_pb2.Usage | None = None

    def _chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        return frame(self._base | {"choices": [_choice(text, finish_reason)]})

    def start(self, first: chat_pb2.ChatEvent) -> bytes:
        return self._chunk(self._prefix) if self._prefix else b""

    def text(self, text: str) -> bytes:
        return self._chunk(text)

    def event(self, event: chat_pb2.ChatEvent) -> bytes:
        kind = event.WhichOneof("event")
        if kind == "text":
            return self._chunk(event.text.text)
        if kind == "usage":
            self._usage = event.usage
        elif kind == "finish":
            out = self._chunk("", FINISH_REASONS.get(event.finish.reason, "stop"))
            if self.include_usage and self._usage is not None:
                out += frame(self._base | {"choices": [], "usage": usage_dict(self._usage)})
            return out
        return b""

    def end(self) -> bytes:
        return DONE

    def error(self, error: OpenAIError) -> bytes:
        return frame(error.body()) + DONE


@router.post(
    "/completions",
    response_model=None,
    summary="Create a completion (legacy): the prompt is sent as a one-message chat",
    responses={
        200: {
            "description": "A `text_completion` object, or with `stream: true` server-sent "
            "`text_completion` chunks ending with `data: [DONE]`",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **ERROR_RESPONSES,
    },
)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    core = core_of(request)
    timeout = settings_of(request).request_timeout
    completion_id = new_completion_id()
    request_id = request_id_from(request.headers.get("x-request-id"), completion_id)
    metadata = metadata_of(request, request_id)
    try:
        chat_request = to_chat_request(to_chat(body), completion_id)
    except UnicodeEncodeError:
        raise invalid_unicode(body.model_dump(exclude_none=True)) from None
    headers = {"x-request-id": request_id}
    prefix = body.text if body.echo else ""

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        call = core.chat.StreamChat(chat_request, metadata=metadata, timeout=timeout)
        stream = TextCompletionStream(
            completion_id=completion_id, model=body.model, include_usage=include_usage, prefix=prefix
        )
        try:
            return await open_stream(
                call, stream, request.receive, headers, settings_of(request).sse_keepalive_s
            )
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)

    created = int(time.time())
    unary = core.chat.Chat(chat_request, metadata=metadata, timeout=timeout)
    try:
        answer = await await_core(request.receive, unary, unary)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    completion = to_text_completion(
        answer, completion_id=completion_id, created=created, model=body.model, prefix=prefix
    )
    return OrjsonResponse(completion, headers=headers)
