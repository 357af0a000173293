"""The seam between core and Cursor: one `Dialect` per Cursor chat RPC, one `Exchange` per call.

A dialect translates and classifies; it never does I/O on the chat stream itself. The driver
(`core/upstream/client.py`) owns the network: it sends what `Exchange.opening()` returns, feeds
every frame Cursor sends to `Exchange.feed()`, sends what the exchange queued in `outbox`
(exec replies, KV acks, `finish_run`), sends `heartbeat()` on a timer for bidi dialects, and
half-closes once `done` is set, like httpx's `Auth.auth_flow` yields requests and the client
sends them.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from connectrpc.errors import ConnectError

from core.chat.catalog import ModelInfo
from core.pool.accounts import Account
from core.upstream.errors import UpstreamError
from cursorgate.v1 import chat_pb2


class DialectName(enum.StrEnum):
    # aiserver.v1.ChatService/StreamUnifiedChatWithTools: server stream, IDE identity (until 2026).
    LEGACY = "legacy"
    # aiserver.v1.InferenceService/RunInference: bidi, IDE 3.18 identity, client owns the loop.
    INFERENCE = "inference"
    # agent.v1.AgentService/Run: bidi, CLI identity, server owns the agent loop.
    AGENT = "agent"


AUTO = "auto"
# A model name no account offers: dialect probes use it, so that a model never runs.
PROBE_MODEL = "cursorgate-dialect-probe"
# The order `auto` tries dialects in: the one that maps one to one onto chat APIs first.
PREFERENCE: tuple[DialectName, ...] = (DialectName.INFERENCE, DialectName.AGENT, DialectName.LEGACY)


class Exchange(Protocol):
    """One chat call on one dialect: pure translation, stateful per stream."""

    # Messages to send on the open stream after the last feed(); the driver empties it.
    outbox: list[Any]
    # The answer is complete: the driver flushes `outbox`, then half-closes its side.
    done: bool

    def opening(self) -> list[Any]:
        """The first message(s) of the call (for a server-streaming RPC: exactly one)."""
        ...

    def feed(self, frame: Any) -> list[chat_pb2.ChatEvent]:
        """One frame from Cursor -> the gateway events it carries (often none or one)."""
        ...

    def heartbeat(self) -> Any | None:
        """The keep-alive message a bidi stream sends every `Dialect.heartbeat_s` (None: none)."""
        ...

    def finish(self) -> list[chat_pb2.ChatEvent]:
        """After Cursor ended the stream normally: what is still owed (e.g. pending tool calls)."""
        ...


@dataclass(frozen=True, slots=True)
class Probe:
    """What a dialect's probe learned about an account: usable or not, and why."""

    ok: bool
    detail: str


class Dialect(Protocol):
    name: DialectName
    # Bidi RPCs need HTTP/2 (Cursor's edge answers HTTP/1.1 with 464).
    bidi: bool
    heartbeat_s: float

    async def exchange(self, account: Account, request: chat_pb2.ChatRequest) -> Exchange:
        """Build the call (async: images may be fetched)."""
        ...

    def open(
        self, account: Account, exchange: Exchange, messages: AsyncIterator[Any], headers: Mapping[str, str]
    ) -> AsyncIterator[Any]:
        """Start the RPC through the generated stub on the account's route (its proxy);
        `messages` is the request stream for bidi dialects (the driver feeds it), ignored by
        server-streaming ones (they send opening())."""
        ...

    def headers(self, account: Account) -> dict[str, str]:
        """This dialect's identity profile for the account (framing headers are connectrpc's)."""
        ...

    def classify(self, err: ConnectError) -> UpstreamError: ...

    async def available_models(self, account: Account) -> dict[str, ModelInfo]: ...

    async def probe(self, account: Account) -> Probe:
        """The cheapest call that tells whether Cursor accepts this dialect for the account."""
        ...
