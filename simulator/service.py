"""The simulated aiserver.v1 services: checks like Cursor's, then the scripted plan."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from google.protobuf.json_format import MessageToDict
from protobuf.wkt import Any as ConnectAny

from aiserver.v1 import chat_pb2, errors_pb2, models_pb2
from core.catalog import THINKING_SUFFIX
from simulator import script
from simulator.config import SimulatorSettings
from simulator.control import SimState

Err = errors_pb2.ErrorDetails.Error
# Per request: the fault the middleware must apply to the HTTP response (see app.py).
FAULT: ContextVar[dict[str, object]] = ContextVar("sim_fault")

JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
# docs/cursor-protocol.md: 8 base64 characters of the obfuscated timestamp, then the machine id
# (64 hex), optionally "/" and the mac machine id (64 hex).
CHECKSUM = re.compile(r"^[A-Za-z0-9+/_-]{8}[0-9a-f]{64}(/[0-9a-f]{64})?$")

# error kind -> (Connect code, ErrorDetails.Error, title)
ERRORS: dict[str, tuple[Code, int, str]] = {
    "auth": (Code.UNAUTHENTICATED, Err.ERROR_NOT_LOGGED_IN, "Not logged in"),
    "expired": (Code.UNAUTHENTICATED, Err.ERROR_AUTH_TOKEN_EXPIRED, "Your session has expired"),
    "rate_limited": (Code.RESOURCE_EXHAUSTED, Err.ERROR_RATE_LIMITED, "Too many requests"),
    "usage_limit": (Code.RESOURCE_EXHAUSTED, Err.ERROR_PRO_USER_USAGE_LIMIT, "Usage limit reached"),
    "outdated": (Code.FAILED_PRECONDITION, Err.ERROR_OUTDATED_CLIENT, "Please update Cursor"),
    "bad_model": (Code.INVALID_ARGUMENT, Err.ERROR_BAD_MODEL_NAME, "Unknown model"),
    "deprecated": (Code.FAILED_PRECONDITION, Err.ERROR_DEPRECATED, "This endpoint is deprecated"),
    "internal": (Code.INTERNAL, Err.ERROR_UNSPECIFIED, "Internal server error"),
    "unavailable": (Code.UNAVAILABLE, Err.ERROR_UNSPECIFIED, "Service unavailable"),
}


# What connect servers (Cursor among them) answer a request over their size limit: no details.
TOO_LARGE_MESSAGE = "message is larger than configured max 4194304"


def cursor_error(kind: str, retry_after: float = 0.0) -> ConnectError:
    if kind == "too_large":
        return ConnectError(Code.RESOURCE_EXHAUSTED, TOO_LARGE_MESSAGE)
    code, error, title = ERRORS[kind]
    details = errors_pb2.ErrorDetails(
        error=error,  # type: ignore[arg-type]
        details=errors_pb2.CustomErrorDetails(title=title, detail=f"{title} (simulated)", is_retryable=True),
    )
    if retry_after:
        details.details.additional_info["retry_after_seconds"] = f"{retry_after:g}"
    packed = ConnectAny(
        type_url="type.googleapis.com/aiserver.v1.ErrorDetails", value=details.SerializeToString()
    )
    return ConnectError(code, title, details=[packed])


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3]) or (0,)


class Checks:
    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self.settings = settings
        self.state = state

    def token(self, ctx: RequestContext[Any, Any]) -> str:
        auth = ctx.request_headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not JWT.match(token) or self.state.behaviour(token).reject:
            raise cursor_error("auth")
        if not CHECKSUM.match(ctx.request_headers.get("x-cursor-checksum", "")):
            raise ConnectError(Code.INVALID_ARGUMENT, "missing or malformed x-cursor-checksum")
        version = ctx.request_headers.get("x-cursor-client-version", "")
        if not version or _version(version) < _version(self.settings.min_client_version):
            raise cursor_error("outdated")
        return token


class SimChatService:
    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self.settings = settings
        self.state = state
        self.checks = Checks(settings, state)

    def _log(
        self, request: chat_pb2.StreamUnifiedChatRequestWithTools, ctx: RequestContext[Any, Any]
    ) -> None:
        headers = {k: v for k, v in ctx.request_headers.items() if k.lower() != "authorization"}
        entry = {"time": time.time(), "headers": headers, "request": MessageToDict(request)}
        self.state.requests.append(entry)
        del self.state.requests[:-200]

    async def stream_unified_chat_with_tools(
        self,
        request: chat_pb2.StreamUnifiedChatRequestWithTools,
        ctx: RequestContext[
            chat_pb2.StreamUnifiedChatRequestWithTools, chat_pb2.StreamUnifiedChatResponseWithTools
        ],
    ) -> AsyncIterator[chat_pb2.StreamUnifiedChatResponseWithTools]:
        self._log(request, ctx)
        token = self.checks.token(ctx)
        chat = request.stream_unified_chat_request
        model = chat.model_details.model_name
        if model not in self.state.models_for(token):
            raise cursor_error("bad_model")
        behaviour = self.state.behaviour(token)
        if behaviour.fail_next > 0:
            behaviour.fail_next -= 1
            FAULT.get({})["http_status"] = 503
            raise cursor_error("unavailable")
        if behaviour.rate_limited_until > time.time():
            raise cursor_error("rate_limited", behaviour.retry_after)
        for result in script.answered_results(chat):
            if not script.id_is_ours(result.tool_call_id, result.tool_name):
                raise ConnectError(Code.INVALID_ARGUMENT, f"unknown tool_call_id {result.tool_call_id!r}")

        plan = script.plan_for(chat, self.settings.frame_delay_ms)
        fault = FAULT.get({})
        self.state.open_streams += 1
        try:
            if plan.first_delay_s:
                await asyncio.sleep(plan.first_delay_s)
            for n, frame in enumerate(plan.frames):
                if plan.fault and n == plan.after:
                    break
                if plan.delay_s:
                    await asyncio.sleep(plan.delay_s)
                yield frame
            else:
                if not plan.fault:
                    return
            await self._fault(plan, fault)
        except (asyncio.CancelledError, GeneratorExit):
            self.state.cancelled_streams += 1
            raise
        finally:
            self.state.open_streams -= 1

    async def _fault(self, plan: script.Plan, fault: dict[str, object]) -> None:
        if plan.fault == "error":
            if plan.error == "unavailable":
                fault["http_status"] = 503
            raise cursor_error(plan.error, plan.retry_after)
        if plan.fault == "stall":
            await asyncio.Event().wait()
        if plan.fault in ("break", "malformed"):
            fault["mode"] = plan.fault
            # One more frame for the middleware to cut or corrupt.
            raise ConnectError(Code.INTERNAL, "fault injected")

    async def get_prompt_dry_run(
        self, request: chat_pb2.StreamUnifiedChatRequest, ctx: RequestContext[Any, Any]
    ) -> chat_pb2.GetPromptDryRunResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "not simulated")


class SimAiService:
    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self.checks = Checks(settings, state)
        self.state = state

    async def available_models(
        self, request: models_pb2.AvailableModelsRequest, ctx: RequestContext[Any, Any]
    ) -> models_pb2.AvailableModelsResponse:
        token = self.checks.token(ctx)
        names = self.state.models_for(token)
        Model = models_pb2.AvailableModelsResponse.AvailableModel
        return models_pb2.AvailableModelsResponse(
            model_names=names,
            models=[
                Model(
                    name=name,
                    default_on=True,
                    supports_agent=True,
                    supports_thinking=name.endswith(THINKING_SUFFIX),
                    supports_images=True,
                    context_token_limit=1_000_000 if "-1m" in name else 200_000,
                    client_display_name=name,
                    server_model_name=name,
                )
                for name in names
            ],
        )
