"""aiserver.v1.InferenceService/RunInference, simulated: the inference dialect's wire.

One bidi stream per run: run_request (IDE 3.18 headers checked) -> run_ready; each invoke_model
is planned by the script from its ChatView and played as invocation_response parts, then
invocation_end; finish_run (or the client's half-close) ends the stream. Heartbeats fill long
planned pauses. Errors: identity and transport failures end the stream as Connect errors, model
call failures come in band as invocation_end.error (see INBAND).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import io
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from google.protobuf.json_format import MessageToDict
from PIL import Image, UnidentifiedImageError

from aiserver.v1 import inference_pb2 as inf
from simulator import script
from simulator.config import SimulatorSettings
from simulator.control import SimState
from simulator.errors import cursor_error
from simulator.files import check_file
from simulator.pacing import paced
from simulator.service import Checks, admit, log_request
from simulator.view import (
    ChatView,
    ViewFile,
    ViewImage,
    ViewMessage,
    ViewTool,
    ViewToolCall,
    ViewToolResult,
)

Client = inf.RunInferenceClientMessage
Server = inf.RunInferenceServerMessage
Response = inf.InferenceStreamResponse

# Error kinds that fail the model call rather than the run: they come back in band, as
# invocation_end.error (the model provider's refusal also as an error part first). Every other
# kind ends the stream with a Connect error.
INBAND = frozenset(
    {"rate_limited", "usage_limit", "bad_model", "region", "model_blocked", "max_mode", "provider"}
)
# The simulator's heartbeat cadence during planned pauses (Cursor's own is not documented).
HEARTBEAT_S = 0.5

_ROLE = {
    inf.INFERENCE_MESSAGE_ROLE_USER: "user",
    inf.INFERENCE_MESSAGE_ROLE_ASSISTANT: "assistant",
    inf.INFERENCE_MESSAGE_ROLE_TOOL: "tool",
}


def _text(message: inf.InferenceCoreMessage) -> str:
    if message.HasField("text"):
        return message.text
    return "\n".join(p.text.text for p in message.parts.parts if p.HasField("text"))


def _image(part: inf.InferenceImagePart) -> ViewImage:
    try:
        data = base64.b64decode(part.data, validate=True)
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        raise ConnectError(Code.INVALID_ARGUMENT, "image part is not a base64 image") from None
    return ViewImage(width, height, part.data, part.mime_type)


def _file(part: inf.InferenceFilePart) -> ViewFile:
    try:
        data = base64.b64decode(part.data, validate=True)
    except (binascii.Error, ValueError):
        raise ConnectError(Code.INVALID_ARGUMENT, "file part data is not base64") from None
    return check_file(data, part.media_type, part.filename, "file part")


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def view_of(run: inf.RunInferenceRunRequest, request: inf.InferenceStreamRequest) -> ChatView:
    model = run.requested_model.model_id
    view = ChatView(dialect="inference", model=model, max_mode=run.requested_model.max_mode)
    view.thinking = model.endswith("-thinking")
    config = request.model_config
    if request.HasField("model_config"):
        view.max_tokens = config.max_tokens if config.HasField("max_tokens") else None
        view.temperature = config.temperature if config.HasField("temperature") else None
        view.top_p = config.top_p if config.HasField("top_p") else None
        view.stop = list(config.stop_sequences)
    for tool in request.tools:
        schema = MessageToDict(tool.parameters).get("jsonSchema", {})
        view.tools.append(ViewTool(tool.name, tool.description, schema if isinstance(schema, dict) else {}))
    system: list[str] = []
    for message in request.messages:
        if message.role == inf.INFERENCE_MESSAGE_ROLE_SYSTEM:
            system.append(_text(message))
            continue
        role = _ROLE.get(message.role)
        if role is None:
            raise ConnectError(Code.INVALID_ARGUMENT, f"unknown message role {message.role}")
        out = ViewMessage(role, _text(message))
        out.images = [_image(p.image) for p in message.parts.parts if p.HasField("image")]
        out.files = [_file(p.file) for p in message.parts.parts if p.HasField("file")]
        if out.files and message.role != inf.INFERENCE_MESSAGE_ROLE_USER:
            raise ConnectError(Code.INVALID_ARGUMENT, "file parts are accepted in user messages only")
        out.reasoning = "".join(r.text for r in message.reasoning_parts)
        out.tool_calls = [
            ViewToolCall(
                c.tool_call_id, c.tool_name, c.raw_tool_call_args or json.dumps(MessageToDict(c.args))
            )
            for c in message.tool_calls
        ]
        out.tool_results = [
            ViewToolResult(r.tool_call_id, r.tool_name, _json(MessageToDict(r.result)), r.is_error)
            for r in message.tool_content.parts
        ]
        view.messages.append(out)
    view.system = "\n\n".join(system)
    return view


def response(invocation_id: str, **part: Any) -> Server:
    return Server(
        invocation_response=inf.RunInferenceInvocationResponse(
            invocation_id=invocation_id, response=Response(**part)
        )
    )


def render(invocation_id: str, frame: script.Frame) -> list[Server]:
    if isinstance(frame, script.Text):
        return [response(invocation_id, text_part=inf.InferenceTextStreamPart(text=frame.text))]
    if isinstance(frame, script.Thinking):
        return [response(invocation_id, thinking_part=inf.InferenceThinkingStreamPart(text=frame.text))]
    return [response(invocation_id, tool_call_part=part) for part in call_parts(frame)]


def call_parts(call: script.ToolCall) -> list[inf.InferenceToolCallStreamPart]:
    """A call as argument fragments (args=stream: three pieces, the last flagged is_complete) or
    whole in one complete part (args=whole)."""
    pieces = [call.args]
    if call.streamed:
        n = len(call.args)
        cuts = sorted({0, n // 3, 2 * n // 3, n})
        pieces = [call.args[a:b] for a, b in itertools.pairwise(cuts)]
    return [
        inf.InferenceToolCallStreamPart(
            tool_call_id=call.call_id,
            tool_name=call.name,
            args=piece,
            is_complete=i == len(pieces) - 1,
            tool_index=call.index,
        )
        for i, piece in enumerate(pieces)
    ]


def usage_parts(invocation_id: str, plan: script.Plan) -> list[Server]:
    total = plan.prompt_tokens + plan.completion_tokens
    usage = inf.InferenceUsageInfo(
        prompt_tokens=plan.prompt_tokens, completion_tokens=plan.completion_tokens, total_tokens=total
    )
    extended = inf.InferenceExtendedUsageInfo(
        input_tokens=plan.prompt_tokens,
        output_tokens=plan.completion_tokens,
        cache_read_tokens=plan.cache_read_tokens,
        max_tokens=200_000,
    )
    return [response(invocation_id, usage=usage), response(invocation_id, extended_usage=extended)]


def inband_error(invocation_id: str, err: ConnectError) -> Server:
    """A Connect error as invocation_end.error: gRPC code number, message, ErrorDetails bytes."""
    details = [inf.RunInferenceErrorDetail(type=d.type_name, value=d.message_bytes) for d in err.details]
    error = inf.RunInferenceInvocationError(
        code=list(Code).index(err.code) + 1, message=err.message, details=details
    )
    return Server(invocation_end=inf.RunInferenceInvocationEnd(invocation_id=invocation_id, error=error))


_STREAM_ERROR_TYPE = {"provider": inf.INFERENCE_STREAM_ERROR_TYPE_OVERLOADED}

# Markers on the handler's queue (besides server messages to send and client messages read).
_CLIENT_END = object()
_DISCONNECTED = object()


# Cursor's connect servers refuse a message over 4 MiB ("message is larger than configured max").
# The simulator reads whole messages and refuses them itself: a server that stops reading
# mid-message leaves hypercorn's HTTP/2 stream half-read (as in simulator/agent.py).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class SimInferenceService:
    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self.settings = settings
        self.state = state
        self.checks = Checks(settings, state)

    async def run_inference(
        self, requests: AsyncIterator[Client], ctx: RequestContext[Client, Server]
    ) -> AsyncIterator[Server]:
        first = await anext(requests, None)
        if first is None or first.WhichOneof("message") != "run_request":
            raise ConnectError(Code.INVALID_ARGUMENT, "the first message must be a run_request")
        log_request(self.state, "inference", ctx, first, None)
        token = self.checks.ide3(ctx)
        if self.state.is_retired(token, "inference", self.settings.retired_dialects()):
            raise cursor_error("update_required")
        run = first.run_request
        yield Server(run_ready=inf.RunInferenceRunReady(resolved_model=run.requested_model))

        # Client messages are read by a task of their own, so that finish_run, a cancellation
        # or a disconnect is seen while an invocation is being played.
        queue: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(_read(requests, queue))
        player: asyncio.Task[None] | None = None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Server):
                    yield item
                    queue.task_done()  # sent: the player may go on (see _emit)
                elif isinstance(item, BaseException):
                    raise item
                elif item is _DISCONNECTED:
                    raise ConnectError(Code.CANCELED, "client disconnected")
                elif item is _CLIENT_END:
                    return
                elif isinstance(item, Client):
                    kind = item.WhichOneof("message")
                    if kind == "finish_run":
                        # Read the client's side to its end first: hypercorn 0.18 fails the
                        # connection (KeyError) when data reaches a stream the app already ended.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(reader), 1.0)
                        return
                    if item.ByteSize() > MAX_MESSAGE_BYTES:
                        raise cursor_error("too_large")  # what Cursor's connect server answers
                    if kind == "invoke_model" and (player is None or player.done()):
                        invoke = item.invoke_model
                        view = view_of(run, invoke.request)
                        log_request(self.state, "inference", ctx, item, view)
                        admit(self.state, self.settings, token, view)
                        player = asyncio.create_task(self._play(invoke.invocation_id, view, queue))
                    elif kind == "invoke_model":
                        raise ConnectError(Code.FAILED_PRECONDITION, "one invocation at a time (simulated)")
                    # cancel_invocation, run_request again: nothing to do in the simulator.
                    queue.task_done()
        finally:
            for task in (reader, player):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _play(self, invocation_id: str, view: ChatView, queue: asyncio.Queue[Any]) -> None:
        plan = script.plan_for(view, self.settings.frame_delay_ms)
        try:
            # A planned silence before the first part is filled with heartbeats, as Cursor does.
            pause, plan = plan.first_delay_s, dataclasses.replace(plan, first_delay_s=0)
            try:
                while pause > 0:
                    await asyncio.sleep(min(HEARTBEAT_S, pause))
                    pause -= HEARTBEAT_S
                    await _emit(queue, Server(heartbeat=inf.RunInferenceHeartbeat()))
            except asyncio.CancelledError:
                self.state.cancelled_streams += 1  # the client left while the model "thought"
                raise
            async for frame in paced(plan, self.state):
                for message in render(invocation_id, frame):
                    await _emit(queue, message)
            for message in usage_parts(invocation_id, plan):
                await _emit(queue, message)
            await _emit(
                queue, Server(invocation_end=inf.RunInferenceInvocationEnd(invocation_id=invocation_id))
            )
        except ConnectError as err:
            if plan.fault == "error" and plan.error in INBAND:
                if plan.error in _STREAM_ERROR_TYPE:
                    part = inf.InferenceStreamError(
                        message=err.message, error_type=_STREAM_ERROR_TYPE[plan.error]
                    )
                    await _emit(queue, response(invocation_id, error=part))
                await _emit(queue, inband_error(invocation_id, err))
            else:
                await _emit(queue, err)


async def _emit(queue: asyncio.Queue[Any], item: Any) -> None:
    """Hand one item to the handler and wait until it is handled: the plan's fault must not be
    armed (pacing.FAULT) while earlier parts are still unsent."""
    queue.put_nowait(item)
    await queue.join()


async def _read(requests: AsyncIterator[Client], queue: asyncio.Queue[Any]) -> None:
    try:
        async for message in requests:
            queue.put_nowait(message)
    except ConnectError:
        queue.put_nowait(_DISCONNECTED)
        return
    queue.put_nowait(_CLIENT_END)
