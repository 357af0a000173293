"""The one gRPC channel to core, its stubs, and the metadata each call forwards."""

from __future__ import annotations

import json

import grpc

from core.logs import REQUEST_ID
from cursorgate.v1 import chat_pb2_grpc, models_pb2_grpc

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
]

Metadata = tuple[tuple[str, str], ...]


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

    def __init__(self, target: str, lb_policy: str = "pick_first") -> None:
        self.target = target
        options = [*CHANNEL_OPTIONS, ("grpc.service_config", service_config(lb_policy))]
        self.channel = grpc.aio.insecure_channel(target, options=options)
        self.chat = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.models = models_pb2_grpc.ModelServiceStub(self.channel)

    def state(self) -> str:
        """Channel connectivity, e.g. "ready", "idle", "transient_failure"."""
        return self.channel.get_state(try_to_connect=True).name.lower()

    async def close(self) -> None:
        await self.channel.close(grace=1.0)


def _valid_value(value: str) -> bool:
    # gRPC metadata values must be printable ASCII; anything else would fail the call locally.
    return value.isascii() and value.isprintable()


def call_metadata(authorization: str | None, request_id: str) -> Metadata:
    """Forward the caller's credentials untouched (core decides), and the request id.

    A missing or unsendable Authorization header forwards nothing: core then answers
    UNAUTHENTICATED, so the caller gets the same 401 either way.
    """
    if authorization and _valid_value(authorization):
        return (("authorization", authorization), ("x-request-id", request_id))
    return (("x-request-id", request_id),)


def request_id_from(header: str | None, fallback: str) -> str:
    """The caller's X-Request-ID when usable (so logs of both layers line up), else ours.

    Also the request's id for its log lines from here on (REQUEST_ID, read by JSON logs).
    """
    request_id = header if header and len(header) <= 200 and _valid_value(header) else fallback
    REQUEST_ID.set(request_id)
    return request_id
