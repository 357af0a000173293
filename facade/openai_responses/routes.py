"""The Responses API endpoints: translate, call core (chat, stored responses), translate back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import orjson
from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cursorgate.v1 import chat_pb2, responses_pb2
from facade.context import core_of, metadata_of, settings_of
from facade.core_client import Metadata, request_id_from
from facade.errors import SERVER_ERROR, OpenAIError, from_grpc_error, invalid_unicode
from facade.guard import CLIENT_CLOSED, ClientGone, await_core
from facade.openai_chat.routes import ERROR_RESPONSES
from facade.openai_responses.convert import (
    INCOMPLETE,
    Item,
    dump_items,
    error_object,
    input_items,
    new_id,
    output_items,
    response_object,
    to_chat_request,
)
from facade.openai_responses.protocol import ITEMS, CreateResponseRequest, InputItem
from facade.openai_responses.stream import Event, ResponseEvents
from facade.responses import OrjsonResponse
from facade.sse import SSE_HEADERS, EventStreamResponse

# Storing and loading a response is a database round trip, not a model call.
STORE_TIMEOUT = 30.0
# nginx's "client closed request": never seen by anyone, but keeps access logs honest.
RESPONSE_NOT_FOUND = "response_not_found"

router = APIRouter()


def sse_frame(event: Event) -> bytes:
    """An SSE frame with the event's type as `event:`, as OpenAI sends Responses events."""
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def _history(request: Request, metadata: Metadata, previous_id: str) -> list[InputItem]:
    """The stored conversation a `previous_response_id` continues."""
    try:
        stored = await core_of(request).responses.GetResponse(
            responses_pb2.GetResponseRequest(id=previous_id), metadata=metadata, timeout=STORE_TIMEOUT
        )
    except grpc.aio.AioRpcError as error:
        failure = from_grpc_error(error)
        if failure.code == RESPONSE_NOT_FOUND or failure.status == 400:  # unknown, or not an id
            raise OpenAIError(
                400,
                f"Previous response with id '{previous_id[:100]}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            ) from None
        raise failure from None
    try:
        return ITEMS.validate_json(stored.items_json)
    except ValidationError:  # written by an older or foreign writer: unusable, say so
        raise OpenAIError(
            400,
            f"Previous response with id '{previous_id[:100]}' cannot be continued.",
            param="previous_response_id",
        ) from None


def _check_encodable(body: CreateResponseRequest) -> None:
    """Parts of the request are echoed and stored as JSON, not only sent as protobuf: refuse what
    JSON can spell but cannot be written back (unpaired surrogates, integers beyond 64 bits)."""
    dumped = body.model_dump(exclude_none=True)
    try:
        orjson.dumps(dumped)
    except orjson.JSONEncodeError:
        failure = invalid_unicode(dumped)
        if failure.param is None:
            failure = OpenAIError(400, "Invalid request body: a number is out of range.")
        raise failure from None


Saver = Callable[[dict[str, Any]], Awaitable[None]]


def _saver(
    request: Request, metadata: Metadata, body: CreateResponseRequest, conversation: list[Item]
) -> Saver:
    async def save(response: dict[str, Any]) -> None:
        if not body.stores:
            return
        stored = responses_pb2.StoredResponse(
            id=response["id"],
            model=body.model,
            response_json=orjson.dumps(response).decode(),
            items_json=orjson.dumps(conversation + response["output"]).decode(),
            previous_response_id=body.previous_response_id or "",
        )
        try:
            await core_of(request).responses.PutResponse(
                responses_pb2.PutResponseRequest(response=stored), metadata=metadata, timeout=STORE_TIMEOUT
            )
        except grpc.aio.AioRpcError as error:
            raise from_grpc_error(error) from None

    return save


@router.post(
    "/responses",
    response_model=None,
    summary="Create a model response (OpenAI Responses API)",
    responses={
        200: {
            "description": "A `response` object, or with `stream: true` server-sent typed events "
            "(`response.created` ... `response.completed`)",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **ERROR_RESPONSES,
    },
)
async def create_response(body: CreateResponseRequest, request: Request) -> Response:
    _check_encodable(body)
    core = core_of(request)
    timeout = settings_of(request).request_timeout
    response_id = new_id("resp")
    request_id = request_id_from(request.headers.get("x-request-id"), response_id)
    metadata = metadata_of(request, request_id)
    history = (
        await _history(request, metadata, body.previous_response_id) if body.previous_response_id else []
    )
    conversation = history + input_items(body)
    try:
        chat_request = to_chat_request(body, conversation, response_id)
    except UnicodeEncodeError:  # JSON can spell unpaired surrogates; protobuf strings cannot hold them
        raise invalid_unicode(body.model_dump(exclude_none=True)) from None
    save = _saver(request, metadata, body, dump_items(conversation))
    headers = {"x-request-id": request_id}
    created = int(time.time())

    if body.stream:
        call = core.chat.StreamChat(chat_request, metadata=metadata, timeout=timeout)
        try:
            first = await await_core(request.receive, call, call.read())
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        if not isinstance(first, chat_pb2.ChatEvent):  # EOF: core ended without an answer
            raise OpenAIError(502, "The gateway core ended the stream without an answer.", SERVER_ERROR)
        snapshot = response_object(
            body, response_id=response_id, created_at=created, status="in_progress", output=[]
        )
        events = ResponseEvents(snapshot)
        return EventStreamResponse(
            _frames(call, events, first, save), on_close=call.cancel, headers=headers | SSE_HEADERS
        )

    unary = core.chat.Chat(chat_request, metadata=metadata, timeout=timeout)
    try:
        answer = await await_core(request.receive, unary, unary)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    reason = INCOMPLETE.get(answer.finish_reason)
    response = response_object(
        body,
        response_id=response_id,
        created_at=created,
        status="incomplete" if reason else "completed",
        output=output_items(answer),
        usage=answer.usage if answer.HasField("usage") else None,
        incomplete_reason=reason,
    )
    await save(response)
    return OrjsonResponse(response, headers=headers)


async def _frames(
    call: grpc.aio.UnaryStreamCall[chat_pb2.ChatRequest, chat_pb2.ChatEvent],
    events: ResponseEvents,
    first: chat_pb2.ChatEvent,
    save: Saver,
) -> AsyncIterator[bytes]:
    try:
        for event in events.start():
            yield sse_frame(event)
        current: object = first
        while isinstance(current, chat_pb2.ChatEvent):
            for event in events.feed(current):
                yield sse_frame(event)
            current = await call.read()
        for event in events.close():
            yield sse_frame(event)
        # Stored before the terminal event, so a client may continue from it at once.
        await save(events.complete())
        yield sse_frame(events.terminal())
    except grpc.aio.AioRpcError as error:
        # Headers are gone: the failure travels in-band, as the response's error.
        failure = from_grpc_error(error)
        yield sse_frame(events.failed(error_object(failure)))
    except OpenAIError as failure:
        yield sse_frame(events.failed(error_object(failure)))
    finally:
        call.cancel()


async def _stored(request: Request, response_id: str) -> responses_pb2.StoredResponse:
    metadata = metadata_of(request, request_id_from(request.headers.get("x-request-id"), new_id("req")))
    try:
        return await core_of(request).responses.GetResponse(
            responses_pb2.GetResponseRequest(id=response_id), metadata=metadata, timeout=STORE_TIMEOUT
        )
    except grpc.aio.AioRpcError as error:
        raise from_grpc_error(error) from None


@router.get("/responses/{response_id}", response_model=None, summary="Retrieve a stored response")
async def get_response(response_id: str, request: Request) -> Response:
    stored = await _stored(request, response_id)
    return Response(stored.response_json.encode(), media_type="application/json")


@router.get(
    "/responses/{response_id}/input_items",
    response_model=None,
    summary="List a stored response's input items",
)
async def list_input_items(response_id: str, request: Request) -> Response:
    stored = await _stored(request, response_id)
    response = orjson.loads(stored.response_json)
    items: list[Item] = orjson.loads(stored.items_json)
    produced = len(response.get("output", []))
    inputs = items[: len(items) - produced] if produced else items
    # OpenAI lists them newest first, each with an id.
    data = [{"id": item.get("id") or f"item_{i}", **item} for i, item in enumerate(inputs)][::-1]
    return OrjsonResponse(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }
    )


@router.delete("/responses/{response_id}", response_model=None, summary="Delete a stored response")
async def delete_response(response_id: str, request: Request) -> Response:
    metadata = metadata_of(request, request_id_from(request.headers.get("x-request-id"), new_id("req")))
    try:
        deleted = await core_of(request).responses.DeleteResponse(
            responses_pb2.DeleteResponseRequest(id=response_id), metadata=metadata, timeout=STORE_TIMEOUT
        )
    except grpc.aio.AioRpcError as error:
        raise from_grpc_error(error) from None
    return OrjsonResponse({"id": deleted.id, "object": "response", "deleted": deleted.deleted})
