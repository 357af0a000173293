"""The one gRPC channel to core, its stubs, the state of the link, and the metadata each call forwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import grpc

from core.observability.logs import REQUEST_ID
from cursorgate.v1 import chat_pb2_grpc, models_pb2_grpc, responses_pb2_grpc

# Keepalive so a core restart or a dead TCP peer is noticed between requests, not on the next
# request; unlimited pings without data because a stream may stay quiet while a model thinks.
CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Requests carry inline images; answers are small but allow room.
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.primary_user_agent", "cursorgate-facade"),
    # While core is away, try again every quarter second (gRPC's default backoff grows to 120 s):
    # a refused connect costs nothing, and a restarted core is found at once.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
    # gRPC's name for the time one connection attempt may take (default 20 s). Calls are
    # fail-fast (not wait-for-ready), so this bounds how long a request can wait for an
    # unreachable core before it gets its 503.
    ("grpc.min_reconnect_backoff_ms", 5000),
]

log = logging.getLogger("facade.core")

# How long core may be unreachable before /healthz says "down" rather than "reconnecting";
# longer than a supervised restart takes (a couple of seconds).
DOWN_AFTER_S = 10.0
# How long a request waits for a link that is not ready before its call fails fast (503): a
# request that arrives as core comes back is served, and one for an absent core does not hang.
RECONNECT_WAIT_S = 1.0

Metadata = tuple[tuple[str, str], ...]

# Longest Authorization value forwarded: keys are ~50 characters, and gRPC caps all metadata at
# 8 KiB (a longer header would fail the call locally, as RESOURCE_EXHAUSTED: a 429).
MAX_AUTHORIZATION = 2048


def service_config(lb_policy: str) -> str:
    """The channel's gRPC service config. With round_robin over several cores, client-side health
    checking (grpc.health.v1 Watch) takes a core out of the rotation the moment it reports
    NOT_SERVING, i.e. when it starts to drain, so new calls go to the others."""
    config: dict[str, object] = {"loadBalancingConfig": [{lb_policy: {}}]}
    if lb_policy == "round_robin":
        config["healthCheckConfig"] = {"serviceName": ""}
    return json.dumps(config)


class CoreClient:
    """Created once per process in the app lifespan; all requests share its channel."""

    def __init__(
        self, target: str, credentials: grpc.ChannelCredentials | None = None, lb_policy: str = "pick_first"
    ) -> None:
        self.target = target
        options = [*CHANNEL_OPTIONS, ("grpc.service_config", service_config(lb_policy))]
        self.channel = (
            grpc.aio.secure_channel(target, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=options)
        )
        self.chat = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.models = models_pb2_grpc.ModelServiceStub(self.channel)
        self.responses = responses_pb2_grpc.ResponseStoreServiceStub(self.channel)
        # Monotonic time the link was last lost (or the client made); None while it is ready.
        self.lost_at: float | None = time.monotonic()
        self._watcher = asyncio.create_task(self._watch(), name="core-link")

    def state(self) -> str:
        """Channel connectivity, e.g. "ready", "idle", "transient_failure"."""
        return self.channel.get_state(try_to_connect=True).name.lower()

    async def connected(self) -> None:
        """Call before a call to core: returns at once while the link is up, else when it is up
        again or after RECONNECT_WAIT_S (the call then fails fast with UNAVAILABLE)."""
        if self.channel.get_state() == grpc.ChannelConnectivity.READY:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.channel.channel_ready(), RECONNECT_WAIT_S)

    def link(self) -> str:
        """The link for /healthz: up; reconnecting (unreachable for under DOWN_AFTER_S); down."""
        if self.lost_at is None:
            return "up"
        return "reconnecting" if self.unreachable_for() < DOWN_AFTER_S else "down"

    def unreachable_for(self) -> float:
        return 0.0 if self.lost_at is None else time.monotonic() - self.lost_at

    async def _watch(self) -> None:
        """Follows the channel's state, and keeps it connecting while core is away, so the link is
        back as soon as core is (not only when the next request arrives)."""
        state = self.channel.get_state(try_to_connect=True)
        failing = False
        while True:
            if state == grpc.ChannelConnectivity.READY:
                if failing:
                    log.warning("core is reachable again after %.1f s", self.unreachable_for())
                self.lost_at, failing = None, False
            else:
                # IDLE also comes after a long quiet spell; only a failed attempt is worth a line.
                if self.lost_at is None:
                    self.lost_at = time.monotonic()
                if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE and not failing:
                    log.warning("cannot reach core at %s; retrying", self.target)
                    failing = True
            await self.channel.wait_for_state_change(state)
            state = self.channel.get_state(try_to_connect=True)

    async def close(self) -> None:
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        await self.channel.close(grace=1.0)


def _valid_value(value: str) -> bool:
    # gRPC metadata values must be printable ASCII; anything else would fail the call locally.
    return value.isascii() and value.isprintable()


def call_metadata(authorization: str | None, request_id: str) -> Metadata:
    """Forward the caller's credentials untouched (core decides), and the request id.

    A missing or unsendable Authorization header forwards nothing: core then answers
    UNAUTHENTICATED, so the caller gets the same 401 either way.
    """
    if authorization and len(authorization) <= MAX_AUTHORIZATION and _valid_value(authorization):
        return (("authorization", authorization), ("x-request-id", request_id))
    return (("x-request-id", request_id),)


def request_id_from(header: str | None, fallback: str) -> str:
    """The caller's X-Request-ID when usable (so logs of both layers line up), else ours.

    Also the request's id for its log lines from here on (REQUEST_ID, read by JSON logs).
    """
    request_id = header if header and len(header) <= 200 and _valid_value(header) else fallback
    REQUEST_ID.set(request_id)
    return request_id
