"""Builds and runs the core gRPC server: chat, models, health, reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from core.accounts import Account, AccountPool
from core.catalog import seed_catalog
from core.chat_service import ChatService
from core.config import CoreSettings
from core.licenses import LicenseRegistry
from core.model_service import ModelService
from core.router import Router
from core.upstream.client import CursorClient
from core.upstream.tokens import normalize_token
from cursorgate.v1 import chat_pb2, chat_pb2_grpc, models_pb2, models_pb2_grpc

log = logging.getLogger("cursorgate.core")

SERVICE_NAMES = (
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
)

# Keepalive so idle facade connections survive proxies and dead peers are noticed.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


@dataclass
class Core:
    settings: CoreSettings
    licenses: LicenseRegistry
    pool: AccountPool
    upstream: CursorClient
    server: grpc.aio.Server
    health: health.aio.HealthServicer

    async def start(self) -> int:
        port = self.server.add_insecure_port(self.settings.grpc_address)
        await self.server.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.upstream.aclose()


def build(settings: CoreSettings) -> Core:
    licenses = LicenseRegistry.from_keys(k.get_secret_value() for k in settings.licenses)
    pool = AccountPool()
    if settings.cursor_token is not None:
        token = normalize_token(settings.cursor_token.get_secret_value())
        pool.add(Account(id="env", token=token, label="CURSOR_TOKEN"))
    upstream = CursorClient(settings)
    catalog = seed_catalog()
    router = Router(pool, upstream, settings.upstream_attempts)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    chat_pb2_grpc.add_ChatServiceServicer_to_server(ChatService(licenses, router, catalog), server)
    models_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(licenses, pool, catalog), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return Core(settings, licenses, pool, upstream, server, health_servicer)


async def serve(settings: CoreSettings) -> None:
    core = build(settings)
    await core.start()
    log.info(
        "core listening on %s (upstream %s, %d account(s), %d license(s))",
        settings.grpc_address, settings.upstream_url, len(core.pool.all()), len(core.licenses),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("core stopping")
    await core.stop()
