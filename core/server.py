"""Builds and runs the core gRPC server: chat, models, admin, health, reflection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from core.api.admin_service import AdminService, Backoffice
from core.api.chat_service import ChatService
from core.api.grpc_guard import MalformedRequestGuard
from core.api.grpc_tls import server_credentials, warn_if_exposed
from core.api.model_service import ModelService
from core.api.response_service import ResponseStoreService
from core.auth.cursor_auth import CursorAuth
from core.auth.renewal import Renewer
from core.chat.aliases import AliasError, AliasTable
from core.chat.catalog import seed_catalog
from core.chat.resolve import ModelResolver
from core.config import CoreSettings
from core.licensing.licenses import LicenseRegistry, seed_license
from core.licensing.limits import LocalLimits
from core.observability.logs import RequestIdInterceptor
from core.observability.metrics import CoreMetrics, MetricsServer
from core.pool.accounts import Account, AccountPool
from core.pool.admission import Admission
from core.pool.drain import CallGate
from core.pool.proxies import ProxyHealth
from core.pool.refresh import Refresher
from core.pool.router import Router
from core.store import Journal, Store
from core.store.quota import QuotaLedger
from core.store.repo import DuplicateAccount
from core.store.responses import ResponseRepo
from core.store.sync import sync_forever, sync_once
from core.upstream.client import CursorClient
from core.upstream.discovery import Discovery
from core.upstream.tokens import normalize_token
from cursorgate.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    chat_pb2,
    chat_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    responses_pb2,
    responses_pb2_grpc,
)

if TYPE_CHECKING:
    # Redis and its clients are imported only when CURSORGATE_REDIS_URL is set (in build()):
    # redis brings opentelemetry with it, about 8 MB of a core that does not use them.
    from redis.asyncio import Redis

    from core.shared.limits import SharedLimits
    from core.shared.load import SharedLoad
    from core.shared.state import SharedAccounts, SharedSlots

log = logging.getLogger("cursorgate.core")

SERVICE_NAMES = (
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    responses_pb2.DESCRIPTOR.services_by_name["ResponseStoreService"].full_name,
)

# Keepalive so idle facade connections survive proxies and dead peers are noticed.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Clients reconnect now and then, so facades balancing over DNS (deploy/k8s) find replicas
    # added since; the grace outlasts the longest request (CURSORGATE_REQUEST_TIMEOUT, 600 s).
    ("grpc.max_connection_age_ms", 600_000),
    ("grpc.max_connection_age_grace_ms", 900_000),
]


def server_options(settings: CoreSettings) -> list[tuple[str, int]]:
    """SERVER_OPTIONS, and how long a call may wait for the server to pick it up.

    gRPC cancels a call that waits longer than `grpc.server_max_unrequested_time_in_server`
    (default 30 s) before the application requests it, and grpc.aio requests calls one at a
    time from the event loop. On an overloaded core the loop falls behind, calls wait past 30 s,
    and the caller gets a bare CANCELLED mid-queue: the erratic failures at 1,000 streams
    (issue 13). A queued call is now bounded by the caller's own deadline (the request timeout)
    instead, and admission control (core/pool/admission.py) refuses excess calls cheaply once picked up.
    """
    unrequested = max(30, math.ceil(settings.request_timeout))
    return [*SERVER_OPTIONS, ("grpc.server_max_unrequested_time_in_server", unrequested)]


# Seconds the gRPC server gives calls after the drain (the drain already waited for them).
STOP_GRACE_S = 1.0


@dataclass
class Core:
    settings: CoreSettings
    licenses: LicenseRegistry
    pool: AccountPool
    upstream: CursorClient
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    store: Store
    journal: Journal
    refresher: Refresher
    discovery: Discovery
    renewer: Renewer
    metrics: CoreMetrics
    gate: CallGate
    aliases: AliasTable | None = None
    metrics_server: MetricsServer | None = None
    shared: SharedAccounts | None = None
    slots: SharedSlots | None = None
    load: SharedLoad | None = None
    redis: Redis | None = None
    limits: LocalLimits | SharedLimits | None = None
    # Holds the admin-API logins still polling Cursor (cancelled at stop).
    admin: AdminService | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> int:
        credentials = server_credentials(self.settings)
        if credentials is None:
            port = self.server.add_insecure_port(self.settings.grpc_address)
        else:
            port = self.server.add_secure_port(self.settings.grpc_address, credentials)
        warn_if_exposed(self.settings, tls=credentials is not None)
        await self.server.start()
        if self.settings.metrics_port:
            self.metrics_server = MetricsServer(
                self.metrics, self.settings.grpc_host, self.settings.metrics_port
            )
            self.metrics_server.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.shared is not None:
            await self.shared.start()
        if self.slots is not None:
            self.slots.start()
        if self.load is not None:
            self.load.start()
        self.journal.start()
        self.discovery.start()
        self.renewer.start()
        # Accounts never refreshed (or not for a while) are fetched now, in the background.
        self.refresher.start()
        sync = sync_forever(
            self.store,
            self.licenses,
            self.pool,
            self.journal,
            self.settings.store_sync_interval,
            self.aliases,
        )
        self._tasks.append(asyncio.create_task(sync, name="store-sync"))
        return port

    async def stop(self, grace: float = 5.0) -> None:
        """Drain, then close: health goes NOT_SERVING and new chat calls are refused (a bare
        UNAVAILABLE, which callers retry elsewhere) while those in flight get `grace` seconds to
        finish; then the server stops, cancelling what is left, which closes their upstream
        streams."""
        await self.health.enter_graceful_shutdown()
        self.gate.closed = True
        try:
            async with asyncio.timeout(grace):
                await self.gate.wait_idle()
        except TimeoutError:
            log.warning("drain timeout: cancelling %d call(s) still in flight", self.gate.in_flight)
        await self.server.stop(STOP_GRACE_S)
        if self.metrics_server is not None:
            await self.metrics_server.aclose()
        if self.slots is not None:
            await self.slots.aclose()
        if self.limits is not None:
            await self.limits.aclose()  # settles what is still being written, before the journal
        if self.load is not None:
            await self.load.aclose()
        if self.shared is not None:
            await self.shared.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.admin is not None:
            await self.admin.aclose()
        await self.refresher.aclose()
        await self.discovery.aclose()
        await self.renewer.aclose()
        await self.journal.aclose()
        await self.store.close()
        await self.upstream.aclose()


async def _seed(store: Store, settings: CoreSettings) -> None:
    """CURSORGATE_LICENSES and CURSOR_TOKEN, added once (hashed / as an account) if new."""
    added = await store.seed_licenses([seed_license(k.get_secret_value()) for k in settings.licenses])
    if added:
        log.info("seeded %d license(s) from CURSORGATE_LICENSES", added)
    if settings.cursor_token is None:
        return
    token = normalize_token(settings.cursor_token.get_secret_value())
    if await store.account_id_for_token(token) is None:
        with contextlib.suppress(DuplicateAccount):  # another replica was quicker
            await store.add_account(
                Account(id=f"acc_{secrets.token_hex(6)}", token=token, label="CURSOR_TOKEN")
            )
            log.info("seeded an account from CURSOR_TOKEN")


async def build(settings: CoreSettings) -> Core:
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    store = await Store.open(settings.database_url, secret_key)
    await _seed(store, settings)
    journal = Journal(store, settings.store_flush_interval, settings.request_log_max_rows)
    licenses = LicenseRegistry(
        await store.licenses(),
        on_use=journal.count_use,
        max_concurrent=settings.license_max_concurrent,
        charge=QuotaLedger(store, journal).charge,
    )
    pool = AccountPool(
        await store.accounts(),
        listener=journal.account_changed,
        proxies=ProxyHealth(settings.proxy_retry_after),
        near_limit_percent=settings.pool_near_limit_percent,
        affinity=settings.pool_affinity,
        affinity_entries=settings.pool_affinity_entries,
    )
    upstream = CursorClient(settings, pool)
    refresher = Refresher(settings, pool, upstream)
    catalog = seed_catalog()
    renewer = Renewer(settings, pool, CursorAuth(settings))
    try:
        aliases = AliasTable(env=settings.alias_table, admin=await store.aliases())
    except AliasError as err:
        await store.close()
        raise SystemExit(f"cursorgate core: the model aliases do not fit together: {err}") from None
    resolver = ModelResolver(pool, catalog, aliases)
    metrics = CoreMetrics(pool)
    router = Router(
        pool,
        upstream,
        settings.upstream_attempts,
        renewer,
        on_failure=metrics.record_upstream_error,
        max_per_account=settings.max_streams_per_account,
    )
    # The request-id interceptor costs a coroutine per call: only where JSON logs use it.
    interceptors: list[grpc.aio.ServerInterceptor] = [MalformedRequestGuard()]
    if settings.log_format == "json":
        interceptors.append(RequestIdInterceptor())
    server = grpc.aio.server(options=server_options(settings), interceptors=interceptors)
    gate = CallGate()
    offset = settings.limits_clock_offset
    local_limits = LocalLimits(journal.count_budget, clock=(lambda: time.time() + offset))
    limits: LocalLimits | SharedLimits = local_limits
    # One Redis client for all shared state; connections are made on first use, in start().
    redis: Redis | None = None
    slots: SharedSlots | None = None
    if settings.redis_url:
        from redis.asyncio import Redis

        from core.shared.limits import SharedLimits
        from core.shared.state import SharedSlots

        redis = Redis.from_url(settings.redis_url)
        slots = SharedSlots(redis, settings.license_max_concurrent, settings.redis_slot_ttl)
        limits = SharedLimits(redis, local_limits, settings.request_timeout + 60)
    chat = ChatService(
        licenses,
        router,
        catalog,
        request_log=journal.log_request,
        resolver=resolver,
        max_deadline=settings.request_timeout,
        metrics=metrics,
        gate=gate,
        shared_slots=slots,
        limits=limits,
        admission=Admission(settings.max_streams, settings.stream_queue, settings.stream_queue_timeout),
    )
    chat_pb2_grpc.add_ChatServiceServicer_to_server(chat, server)
    models_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(licenses, pool, catalog, resolver), server
    )
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    office = Backoffice(
        licenses,
        pool,
        store,
        journal,
        refresher,
        renewer,
        resolver,
        limits,
        login_timeout=settings.account_login_timeout,
    )
    admin = AdminService(office, admin_key)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)
    responses = ResponseRepo(store.engine, settings.response_store_max_rows, settings.response_store_ttl)
    responses_pb2_grpc.add_ResponseStoreServiceServicer_to_server(
        ResponseStoreService(licenses, responses), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    discovery = Discovery(upstream.ctx, pool)
    core = Core(
        settings,
        licenses,
        pool,
        upstream,
        server,
        health_servicer,
        store,
        journal,
        refresher,
        discovery,
        renewer,
        metrics,
        gate,
        aliases,
        limits=limits,
        admin=admin,
    )
    if redis is not None:
        from core.shared.load import SharedLoad
        from core.shared.state import SharedAccounts

        core.redis, core.slots, core.shared = redis, slots, SharedAccounts(redis, pool)
        core.load = pool.shared_load = SharedLoad(redis, settings.redis_slot_ttl)
        office.on_store_change = core.shared.store_changed
        core.shared.on_sync = functools.partial(sync_once, store, licenses, pool, journal, aliases)
    return core


async def serve(settings: CoreSettings) -> None:
    core = await build(settings)
    await core.start()
    log.info(
        "core listening on %s (upstream %s, %d account(s), %d license(s), admin API %s)",
        settings.grpc_address,
        settings.upstream_url,
        len(core.pool.all()),
        len(core.licenses),
        "on" if settings.admin_key else "off (no CURSORGATE_ADMIN_KEY)",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("core draining: %d call(s) in flight, up to %.0f s", core.gate.in_flight, settings.drain_timeout)
    await core.stop(settings.drain_timeout)
    log.info("core stopped")
