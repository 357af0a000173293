"""The Anthropic Messages endpoints: translate, call core, translate back. No decisions of their own."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from facade.anthropic_messages.convert import MessageStream, new_message_id, to_chat_request, to_message
from facade.anthropic_messages.schemas import CountTokensRequest, MessagesRequest
from facade.context import core_of, metadata_of, settings_of
from facade.core_client import request_id_from
from facade.errors import invalid_unicode
from facade.guard import CLIENT_CLOSED, ClientGone, await_core
from facade.responses import OrjsonResponse
from facade.sse import PING_EVENT, open_stream

logger = logging.getLogger("facade.anthropic")

# count_tokens is a local estimate in core: it must not wait for a completion's deadline.
COUNT_TIMEOUT = 30.0

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description}
    for status, description in {
        400: "Invalid request (Anthropic error body, type invalid_request_error)",
        401: "Missing or wrong API key (authentication_error)",
        403: "The API key may not use this model (permission_error)",
        404: "Unknown model (not_found_error)",
        413: "Request body too large (request_too_large)",
        429: "Rate limited or quota exhausted (rate_limit_error; see Retry-After)",
        500: "Upstream error (api_error)",
        504: "Upstream timeout (timeout_error)",
        529: "Upstream or gateway core unavailable (overloaded_error)",
    }.items()
}

router = APIRouter()


def _authorization(request: Request) -> str | None:
    """Anthropic clients send the key as x-api-key; Bearer (as OpenAI's) works as well."""
    api_key = request.headers.get("x-api-key")
    if api_key:
        return f"Bearer {api_key.strip()}"
    return request.headers.get("authorization")


def _log_request_headers(request: Request) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "messages request: anthropic-version=%s anthropic-beta=%s query=%s",
            request.headers.get("anthropic-version"),
            request.headers.get("anthropic-beta"),
            request.url.query,
        )


@router.post(
    "/v1/messages",
    response_model=None,
    summary="Create a message (Anthropic Messages API)",
    responses={
        200: {
            "description": "A `message` object, or with `stream: true` Anthropic's server-sent "
            "events (message_start ... message_stop)",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **ERROR_RESPONSES,
    },
)
async def create_message(body: MessagesRequest, request: Request) -> Response:
    _log_request_headers(request)
    core = core_of(request)
    timeout = settings_of(request).request_timeout
    message_id = new_message_id()
    request_id = request_id_from(request.headers.get("x-request-id"), message_id)
    metadata = metadata_of(request, request_id, _authorization(request))
    try:
        chat_request = to_chat_request(body, message_id)
    except UnicodeEncodeError:  # JSON can spell unpaired surrogates; protobuf strings cannot hold them
        raise invalid_unicode(body.model_dump(exclude_none=True)) from None
    headers = {"x-request-id": request_id, "request-id": request_id}

    if body.stream:
        call = core.chat.StreamChat(chat_request, metadata=metadata, timeout=timeout)
        try:
            stream = MessageStream(message_id=message_id, model=body.model)
            keepalive_s = settings_of(request).sse_keepalive_s
            return await open_stream(call, stream, request.receive, headers, keepalive_s, PING_EVENT)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)

    unary = core.chat.Chat(chat_request, metadata=metadata, timeout=timeout)
    try:
        answer = await await_core(request.receive, unary, unary)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return OrjsonResponse(to_message(answer, message_id=message_id, model=body.model), headers=headers)


@router.post(
    "/v1/messages/count_tokens",
    response_model=None,
    summary="Count the tokens of a message request (the gateway's estimate)",
    responses={200: {"description": '`{"input_tokens": N}`'}, **ERROR_RESPONSES},
)
async def count_tokens(body: CountTokensRequest, request: Request) -> Response:
    _log_request_headers(request)
    request_id = request_id_from(request.headers.get("x-request-id"), new_message_id())
    metadata = metadata_of(request, request_id, _authorization(request))
    try:
        chat_request = to_chat_request(body, request_id)
    except UnicodeEncodeError:
        raise invalid_unicode(body.model_dump(exclude_none=True)) from None
    timeout = min(settings_of(request).request_timeout, COUNT_TIMEOUT)
    call = core_of(request).chat.CountTokens(chat_request, metadata=metadata, timeout=timeout)
    try:
        counted = await await_core(request.receive, call, call)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return OrjsonResponse({"input_tokens": counted.input_tokens}, headers={"request-id": request_id})
