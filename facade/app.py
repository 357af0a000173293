"""The facade's ASGI application: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from facade.admin import router as admin_router
from facade.auth_limit import AuthFailureLimitMiddleware, MemoryFailureLimiter
from facade.config import FacadeSettings, load_settings
from facade.core_client import CoreClient
from facade.errors import install_error_handlers
from facade.grpc_tls import channel_credentials
from facade.headers import SecurityHeadersMiddleware
from facade.limits import BodySizeLimitMiddleware
from facade.openai_responses.routes import router as responses_router
from facade.responses import OrjsonResponse
from facade.routes import health_router, router

# Both prefixes serve the same API: /cursor/v1 is the documented base URL, /v1 is what
# tools that hard-code OpenAI's layout expect.
API_PREFIXES = ("/cursor/v1", "/v1")


def create_app(settings: FacadeSettings | None = None) -> FastAPI:
    settings = settings if settings is not None else load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One channel per process: HTTP/2 multiplexes every request over it.
        core = CoreClient(settings.core_target, channel_credentials(settings))
        app.state.core = core
        try:
            yield
        finally:
            await core.close()

    app = FastAPI(
        title="cursorgate",
        summary="OpenAI-compatible chat completions over the models of a Cursor subscription",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        # Swagger UI and ReDoc load their code from a CDN: off unless asked for. /openapi.json
        # (plain JSON) stays.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    for prefix in API_PREFIXES:
        app.include_router(router, prefix=prefix, tags=["openai"])
        app.include_router(responses_router, prefix=prefix, tags=["openai-responses"])
    app.include_router(health_router, tags=["health"])
    app.include_router(admin_router)  # /cursor/admin: page and JSON API over core's AdminService

    # add_middleware puts each new one outside the previous: the size limit is checked
    # before routing, failed-auth limiting before the body is read, and CORS (outermost)
    # still decorates their 413 and 429.
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout
    )
    if settings.auth_failure_limit > 0:
        limiter = MemoryFailureLimiter(
            settings.auth_failure_limit, settings.auth_failure_window, settings.auth_lockout
        )
        app.add_middleware(AuthFailureLimitMiddleware, limiter=limiter)
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "retry-after"],
        )
    return app
