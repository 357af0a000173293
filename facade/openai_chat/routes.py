"""The OpenAI REST endpoints: translate, call core, translate back. No decisions of their own."""

from __future__ import annotations

import time
from typing import Any

import grpc
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from cursorgate.v1 import models_pb2
from facade.context import core_of, metadata_of, settings_of
from facade.core_client import request_id_from
from facade.errors import OpenAIError, from_grpc_error, invalid_unicode
from facade.guard import CLIENT_CLOSED, ClientGone, await_core
from facade.openai_chat.convert import (
    ChunkStream,
    model_list,
    model_object,
    new_completion_id,
    to_chat_request,
    to_completion,
)
from facade.openai_chat.schemas import ChatCompletionRequest
from facade.responses import OrjsonResponse
from facade.sse import open_stream

# Listing models is cheap; do not let it hang for the full completion deadline.
MODELS_TIMEOUT = 30.0

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description}
    for status, description in {
        400: "Invalid request (OpenAI error body; `param` names the field)",
        401: "Missing or wrong API key",
        403: "The API key may not use this model",
        404: "Unknown model",
        413: "Request body too large",
        429: "Rate limited or quota exhausted (see Retry-After)",
        502: "Upstream error",
        503: "Upstream or gateway core unavailable",
        504: "Upstream timeout",
    }.items()
}

router = APIRouter()


@router.post(
    "/chat/completions",
    response_model=None,
    summary="Create a chat completion",
    responses={
        200: {
            "description": "A `chat.completion` object, or with `stream: true` server-sent "
            "`chat.completion.chunk` events ending with `data: [DONE]`",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **ERROR_RESPONSES,
    },
)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    core = core_of(request)
    timeout = settings_of(request).request_timeout
    completion_id = new_completion_id()
    request_id = request_id_from(request.headers.get("x-request-id"), completion_id)
    metadata = metadata_of(request, request_id)
    try:
        chat_request = to_chat_request(body, completion_id)
    except UnicodeEncodeError:  # JSON can spell unpaired surrogates; protobuf strings cannot hold them
        raise invalid_unicode(body.model_dump(exclude_none=True)) from None
    headers = {"x-request-id": request_id}
    await core.connected()
    inline_think = settings_of(request).reasoning_inline_think

    if body.stream:
        call = core.chat.StreamChat(chat_request, metadata=metadata, timeout=timeout)
        chunks = ChunkStream(
            completion_id=completion_id,
            model=body.model,
            include_usage=body.include_usage,
            inline_think=inline_think,
            legacy_functions=body.legacy_functions,
        )
        try:
            return await open_stream(
                call, chunks, request.receive, headers, settings_of(request).sse_keepalive_s
            )
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)

    created = int(time.time())
    unary = core.chat.Chat(chat_request, metadata=metadata, timeout=timeout)
    try:
        answer = await await_core(request.receive, unary, unary)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    completion = to_completion(
        answer,
        completion_id=completion_id,
        created=created,
        model=body.model,
        inline_think=inline_think,
        legacy_functions=body.legacy_functions,
    )
    return OrjsonResponse(completion, headers=headers)


async def _list_models(request: Request) -> models_pb2.ListModelsResponse:
    request_id = request_id_from(request.headers.get("x-request-id"), new_completion_id())
    timeout = min(settings_of(request).request_timeout, MODELS_TIMEOUT)
    await core_of(request).connected()
    try:
        return await core_of(request).models.ListModels(
            models_pb2.ListModelsRequest(), metadata=metadata_of(request, request_id), timeout=timeout
        )
    except grpc.aio.AioRpcError as error:
        raise from_grpc_error(error) from None


@router.get("/models", response_model=None, summary="List the models this API key may use")
async def list_models(request: Request) -> Response:
    return OrjsonResponse(model_list(await _list_models(request)))


@router.get("/models/{model:path}", response_model=None, summary="Retrieve one model")
async def retrieve_model(model: str, request: Request) -> Response:
    for candidate in (await _list_models(request)).models:
        if candidate.id == model:
            return OrjsonResponse(model_object(candidate))
    raise OpenAIError(
        404,
        f"The model '{model[:100]}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


@router.post("/embeddings", response_model=None, summary="Not available: Cursor offers no embedding models")
async def create_embeddings(request: Request) -> Response:
    raise OpenAIError(
        404,
        "Embeddings are not available: Cursor offers no embedding models, so this gateway serves "
        "chat models only.",
        param="model",
        code="model_not_found",
    )
