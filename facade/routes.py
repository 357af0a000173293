"""The OpenAI REST endpoints: translate, call core, translate back. No decisions of their own."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from cursorgate.v1 import models_pb2
from facade.config import FacadeSettings
from facade.convert import (
    ChunkStream,
    model_list,
    model_object,
    new_completion_id,
    to_chat_request,
    to_completion,
)
from facade.core_client import CoreClient, Metadata, call_metadata, request_id_from
from facade.errors import OpenAIError, from_grpc_error, invalid_unicode
from facade.responses import OrjsonResponse
from facade.schemas import ChatCompletionRequest
from facade.sse import ClientGone, DisconnectGuard, open_stream

# Listing models is cheap; do not let it hang for the full completion deadline.
MODELS_TIMEOUT = 30.0
# nginx's "client closed request": never seen by anyone, but keeps access logs honest.
CLIENT_CLOSED = 499

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


def _core(request: Request) -> CoreClient:
    core: CoreClient = request.app.state.core
    return core


def _settings(request: Request) -> FacadeSettings:
    settings: FacadeSettings = request.app.state.settings
    return settings


def _metadata(request: Request, request_id: str) -> Metadata:
    return call_metadata(request.headers.get("authorization"), request_id)


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
    core = _core(request)
    timeout = _settings(request).request_timeout
    completion_id = new_completion_id()
    request_id = request_id_from(request.headers.get("x-request-id"), completion_id)
    metadata = _metadata(request, request_id)
    try:
        chat_request = to_chat_request(body, completion_id)
    except UnicodeEncodeError:  # JSON can spell unpaired surrogates; protobuf strings cannot hold them
        raise invalid_unicode(body.model_dump(exclude_none=True)) from None
    headers = {"x-request-id": request_id}

    if body.stream:
        call = core.chat.StreamChat(chat_request, metadata=metadata, timeout=timeout)
        chunks = ChunkStream(completion_id=completion_id, model=body.model, include_usage=body.include_usage)
        try:
            return await open_stream(
                call, chunks, request.receive, headers, _settings(request).sse_keepalive_s
            )
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)

    created = int(time.time())
    unary = core.chat.Chat(chat_request, metadata=metadata, timeout=timeout)
    guard = DisconnectGuard(request.receive, unary)
    try:
        async with guard:
            answer = await unary
    except grpc.aio.AioRpcError as error:
        if guard.disconnected:
            return Response(status_code=CLIENT_CLOSED)  # the guard's own cancel, not a failure
        raise from_grpc_error(error) from None
    except asyncio.CancelledError:
        if guard.disconnected:
            return Response(status_code=CLIENT_CLOSED)
        unary.cancel()
        raise
    completion = to_completion(answer, completion_id=completion_id, created=created, model=body.model)
    return OrjsonResponse(completion, headers=headers)


async def _list_models(request: Request) -> models_pb2.ListModelsResponse:
    request_id = request_id_from(request.headers.get("x-request-id"), new_completion_id())
    timeout = min(_settings(request).request_timeout, MODELS_TIMEOUT)
    try:
        return await _core(request).models.ListModels(
            models_pb2.ListModelsRequest(), metadata=_metadata(request, request_id), timeout=timeout
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
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


health_router = APIRouter()


@health_router.get("/healthz", response_model=None, summary="Liveness, and the state of the channel to core")
async def healthz(request: Request) -> Response:
    return OrjsonResponse({"status": "ok", "core": _core(request).state()})
