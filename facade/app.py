"""The facade's ASGI application: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from core.observability.tracing import untraced
from facade import anthropic_messages, health, openai_chat, openai_responses
from facade.admin import router as admin_router
from facade.auth_limit import AuthFailureLimitMiddleware, MemoryFailureLimiter
from facade.config import FacadeSettings, load_settings
from facade.core_client import CoreClient
from facade.drain import Drain, DrainMiddleware, readiness_router
from facade.errors import install_error_handlers
from facade.grpc_tls import channel_credentials
from facade.headers import SecurityHeadersMiddleware
from facade.limits import BodySizeLimitMiddleware
from facade.metrics import FacadeMetrics, MetricsMiddleware, metrics_router
from facade.responses import OrjsonResponse


def create_app(settings: FacadeSettings | None = None) -> FastAPI:
    settings = settings if settings is not None else load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One channel per process: HTTP/2 multiplexes every request over it.
        core = CoreClient(settings.core_target, channel_credentials(settings), settings.core_lb_policy)
        app.state.core = core
        try:
            yield
        finally:
            await core.close()

    app = FastAPI(
        title="cursorgate",
        summary="OpenAI- and Anthropic-compatible APIs over the models of a Cursor subscription",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        # Swagger UI and ReDoc load their code from a CDN: off unless asked for. /openapi.json
        # (plain JSON) stays.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        # FastAPI's OpenTelemetry spans, live only once core/observability/tracing.py set a tracer provider.
        # Metrics are Prometheus' (facade/metrics.py); its logs could carry request bodies.
        telemetry={"metrics": False, "logs": False, "exclude": untraced},
    )
    app.state.settings = settings
    app.state.drain = Drain()
    app.state.metrics = FacadeMetrics()
    install_error_handlers(app)
    # One package per API surface; each attaches its own routes.
    openai_chat.attach(app)
    openai_responses.attach(app)
    anthropic_messages.attach(app)
    app.include_router(health.router, tags=["health"])
    app.include_router(readiness_router, tags=["health"])
    app.include_router(metrics_router)
    app.include_router(admin_router)  # /cursor/admin: page and JSON API over core's AdminService

    # add_middleware puts each new one outside the previous: the size limit is checked
    # before routing, failed-auth limiting before the body is read, a draining process refuses
    # before that, the metrics see every answer (the drain's 503s included), and CORS
    # (outermost) still decorates them all.
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout
    )
    if settings.auth_failure_limit > 0:
        limiter = MemoryFailureLimiter(
            settings.auth_failure_limit, settings.auth_failure_window, settings.auth_lockout
        )
        app.add_middleware(AuthFailureLimitMiddleware, limiter=limiter)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(DrainMiddleware, drain=app.state.drain)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "retry-after"],
        )
    return app
