"""What every simulated RPC shares: Cursor's checks on identity, the request log, and
AiService/AvailableModels."""

from __future__ import annotations

import re
import time
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from aiserver.v1 import models_pb2
from core.chat.catalog import THINKING_SUFFIX
from core.upstream.tokens import jwt_claims
from simulator import script
from simulator.config import SimulatorSettings
from simulator.control import SimState
from simulator.errors import cursor_error
from simulator.pacing import FAULT
from simulator.view import ChatView

JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
# docs/cursor-protocol.md: 8 base64 characters of the obfuscated timestamp, then the machine id
# (64 hex), optionally "/" and the mac machine id (64 hex).
# The CLI's build string (agent-protocol.md §2.5); an IDE-style version looks like "3.18.9".
CLI_VERSION = re.compile(r"^cli-\d{4}\.\d{2}\.\d{2}-[0-9a-f]{7,40}$")
IDE_VERSION = re.compile(r"^\d+\.\d+")
CHECKSUM = re.compile(r"^[A-Za-z0-9+/_-]{8}[0-9a-f]{64}(/[0-9a-f]{64})?$")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3]) or (0,)


class Checks:
    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self.settings = settings
        self.state = state

    def bearer(self, ctx: RequestContext[Any, Any]) -> str:
        """The account's token, refused as Cursor refuses a bad or rejected one."""
        auth = ctx.request_headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not JWT.match(token) or self.state.behaviour(token).reject:
            raise cursor_error("auth")
        exp = jwt_claims(token).get("exp")
        if isinstance(exp, int | float) and exp < time.time():
            raise cursor_error("expired")
        return token

    def token(self, ctx: RequestContext[Any, Any]) -> str:
        """The legacy IDE 2.x profile: bearer, checksum, a version not below the minimum."""
        token = self.bearer(ctx)
        if not CHECKSUM.match(ctx.request_headers.get("x-cursor-checksum", "")):
            raise ConnectError(Code.INVALID_ARGUMENT, "missing or malformed x-cursor-checksum")
        version = ctx.request_headers.get("x-cursor-client-version", "")
        if not version or _version(version) < _version(self.settings.min_client_version):
            raise cursor_error("outdated")
        return token

    def ide3(self, ctx: RequestContext[Any, Any]) -> str:
        """The IDE 3.18 profile (RunInference): client type ide, version >= 3.0, checksum, platform
        and build commit (agent-protocol.md §2.5)."""
        token = self.token(ctx)
        h = ctx.request_headers
        if h.get("x-cursor-client-type") != "ide" or _version(h.get("x-cursor-client-version", "")) < (3,):
            raise cursor_error("outdated")
        if not all(h.get(f"x-cursor-client-{k}") for k in ("os", "arch", "device-type", "commit")):
            raise ConnectError(Code.INVALID_ARGUMENT, "missing x-cursor-client-os/arch/device-type/commit")
        return token

    def cli(self, ctx: RequestContext[Any, Any]) -> str:
        """The CLI profile (agent RPCs): client type cli, a cli-YYYY.MM.DD-<hex> build not older
        than the minimum, no checksum. An IDE-style version from client type cli is outdated, as
        agentn answers it (agent-protocol.md §2.6)."""
        token = self.bearer(ctx)
        if ctx.request_headers.get("x-cursor-client-type", "") != "cli":
            raise ConnectError(Code.PERMISSION_DENIED, "this endpoint serves the cli client type only")
        version = ctx.request_headers.get("x-cursor-client-version", "")
        if not CLI_VERSION.match(version):
            if IDE_VERSION.match(version):
                raise cursor_error("outdated")
            raise ConnectError(Code.PERMISSION_DENIED, "unknown client version")
        if _version(version) < _version(self.settings.min_cli_version):
            raise cursor_error("outdated")
        return token


def display_name(model: str) -> str:
    """A display name as Cursor's look: "claude-4.5-sonnet-thinking" -> "Claude 4.5 Sonnet Thinking"."""
    words = model.replace("-", " ").split()
    return " ".join(w.upper() if w in ("gpt", "xhigh") else w[:1].upper() + w[1:] for w in words)


class SimAiService:
    def __init__(self, settings: SimulatorSettings, state: SimState) -> None:
        self.checks = Checks(settings, state)
        self.state = state

    async def available_models(
        self, request: models_pb2.AvailableModelsRequest, ctx: RequestContext[Any, Any]
    ) -> models_pb2.AvailableModelsResponse:
        token = self.checks.token(ctx)
        names = self.state.models_for(token)
        behaviour = self.state.behaviour(token)
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
                    client_display_name=display_name(name),
                    server_model_name=name,
                    supports_max_mode=name not in behaviour.no_max,
                    supports_non_max_mode=name not in behaviour.max_only,
                    context_token_limit_for_max_mode=0 if name in behaviour.no_max else 1_000_000,
                )
                for name in names
            ],
        )


def log_request(
    state: SimState, dialect: str, ctx: RequestContext[Any, Any], raw: Message, view: ChatView | None
) -> None:
    """The request log tests read: headers (no authorization), the raw message, and the view."""
    headers = {k: v for k, v in ctx.request_headers.items() if k.lower() != "authorization"}
    entry = {
        "time": time.time(),
        "dialect": dialect,
        "headers": headers,
        "request": MessageToDict(raw),
        "view": view.to_json() if view is not None else None,
    }
    state.requests.append(entry)
    del state.requests[:-200]


def admit(state: SimState, settings: SimulatorSettings, token: str, view: ChatView) -> None:
    """Cursor's checks on a chat, the same on every RPC: retired dialect, unknown model, the
    token's scripted behaviour, tool results for calls the model never made."""
    if state.is_retired(token, view.dialect, settings.retired_dialects()):
        raise cursor_error("update_required")
    if view.model not in state.models_for(token):
        raise cursor_error("bad_model")
    behaviour = state.behaviour(token)
    if view.model in behaviour.max_only and not view.max_mode:
        raise cursor_error("max_mode_required")
    if view.model in behaviour.no_max and view.max_mode:
        raise cursor_error("no_max_mode")
    if behaviour.fail_next > 0:
        behaviour.fail_next -= 1
        FAULT.get({})["http_status"] = 503
        raise cursor_error("unavailable")
    if behaviour.rate_limited_until > time.time():
        raise cursor_error("rate_limited", behaviour.retry_after)
    forged = script.forged_result(view)
    if forged is not None:
        raise ConnectError(Code.INVALID_ARGUMENT, f"unknown tool_call_id {forged.id!r}")
