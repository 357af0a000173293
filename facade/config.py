"""Facade settings, read from `CURSORGATE_*` environment variables (a public interface)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


class FacadeSettings(BaseSettings):
    """Everything the REST facade needs; core reads its own settings from the same environment."""

    # extra="ignore": the .env file is shared with core, which has its own variables.
    model_config = SettingsConfigDict(env_prefix="CURSORGATE_", extra="ignore", env_file=None)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    # Only used to build the default core address, so both layers agree on one port variable.
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    # host:port of core's gRPC server; empty means 127.0.0.1:<grpc_port>.
    core_address: str = ""
    # TLS to core (PEM files, the same variables core reads): CA verifies core's certificate
    # (system roots when unset); CERT and KEY are the facade's client certificate for mutual TLS.
    # TLS is on when CA or CERT is set.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    grpc_tls_ca: Path | None = None
    # gRPC load balancing over the addresses core_address resolves to: pick_first (one core, or a
    # proxy in front: a restarted core is waited for) or round_robin (a `dns:///` name of several
    # core replicas, as deploy/k8s does: calls spread over all, a missing one is skipped).
    core_lb_policy: Literal["pick_first", "round_robin"] = "pick_first"
    # Seconds; the gRPC deadline the facade gives core for one request.
    request_timeout: float = Field(default=600.0, gt=0)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=0)
    # Comma-separated; empty leaves CORS off.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "info"
    # Set by `cursorgate run` for its children: its JSON status file, whose restart counts
    # /healthz shows.
    supervisor_status_file: str = ""
    # Serve /docs (Swagger UI) and /redoc; both load their scripts from a public CDN.
    api_docs: bool = False
    # Failed authentications (401s to requests with credentials) one client address may have
    # within `auth_failure_window` seconds; past it, its credentials get 429 for `auth_lockout`
    # seconds. 0 turns the limit off.
    # Slow clients: seconds for a request's headers to arrive, and for its whole body.
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=60.0, gt=0)
    # Connections open at once (0: no cap); past it, new requests get 503 at once.
    max_connections: int = Field(default=4096, ge=0)
    auth_failure_limit: int = Field(default=30, ge=0)
    auth_failure_window: float = Field(default=60.0, gt=0)
    auth_lockout: float = Field(default=60.0, gt=0)
    # Chat completions: reasoning inlined in `content` as <think>...</think> instead of the
    # `reasoning_content`/`reasoning` fields, for clients that read only the content.
    reasoning_inline_think: bool = False
    # "text", or "json": one JSON object per line, with the request id (core/observability/logs.py).
    log_format: Literal["text", "json"] = "text"
    # Seconds of silence on an event stream before an SSE keep-alive goes out (a comment line on
    # the OpenAI surfaces, an `event: ping` on Anthropic's), so proxies keep a thinking model's
    # stream open; 0 turns them off.
    sse_keepalive_s: float = Field(default=15.0, ge=0)
    # Seconds that requests in flight get to finish after SIGTERM while new ones are refused with
    # a retryable 503 and /readyz answers 503; then the process exits.
    drain_timeout: float = Field(default=30.0, ge=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level", mode="after")
    @classmethod
    def _lower_level(cls, value: str) -> str:
        return value.strip().lower() or "info"

    @property
    def core_target(self) -> str:
        return self.core_address.strip() or f"127.0.0.1:{self.grpc_port}"


def env_file() -> Path | None:
    """`CURSORGATE_ENV_FILE` when set, else `./.env` when it exists."""
    configured = os.environ.get("CURSORGATE_ENV_FILE")
    if configured:
        return Path(configured)
    default = Path(".env")
    return default if default.is_file() else None


def load_settings() -> FacadeSettings:
    # `_env_file` is a BaseSettings init option that mypy, seeing only the fields, does not know.
    return FacadeSettings(_env_file=env_file())  # type: ignore[call-arg]
