"""Core settings, read from the environment (and an optional env file).

The variable names are a public interface: keep them stable.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.logs import LogFormat

# "Outdated client" is the most common breakage in the field; 2.3.41 is the newest IDE version
# the public record has seen (docs/cursor-protocol.md). Override with CURSORGATE_CLIENT_VERSION.
DEFAULT_CLIENT_VERSION = "2.3.41"
DEFAULT_UPSTREAM_URL = "https://api2.cursor.sh"
# The CLI's agent host, as GetServerConfig's agentUrlConfig names it (agent-protocol.md §2.1).
DEFAULT_AGENT_URL = "https://agentn.global.api5.cursor.sh"
# Current identities per dialect (agent-protocol.md §2.5-2.6): IDE 3.18.9 and its commit as pinned
# by oh-my-pi's late-2026 RunInference client; a CLI build seen working in late 2026 (sub2api).
DEFAULT_IDE_VERSION = "3.18.9"
DEFAULT_IDE_COMMIT = "2ba48ff3f7514cc4643c52ca9f7b3173d9b66130"
DEFAULT_CLI_VERSION = "cli-2026.09.02-c22c1a3"
DIALECTS = ("auto", "inference", "agent", "legacy")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/cursorgate.db"


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CURSORGATE_",
        env_file=os.environ.get("CURSORGATE_ENV_FILE", ".env"),
        extra="ignore",
        populate_by_name=True,
    )

    # One Cursor account for simple setups; the account pool adds more.
    cursor_token: SecretStr | None = Field(default=None, validation_alias="CURSOR_TOKEN")
    # Gateway API keys accepted from callers, comma separated (seeded; more come from the admin API).
    licenses: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    admin_key: SecretStr | None = None

    # Requests one license may have open at once (0: no limit); 429 above it.
    license_max_concurrent: int = 0

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051

    upstream_url: str = DEFAULT_UPSTREAM_URL
    # Host of agent.v1.AgentService/Run; empty: DEFAULT_AGENT_URL against Cursor, else upstream_url.
    agent_url: str = ""
    # Which Cursor chat RPC to speak: auto (probe each account, remember what works), or one.
    upstream_dialect: str = "auto"
    # The legacy dialect's IDE version (StreamUnifiedChatWithTools).
    client_version: str = DEFAULT_CLIENT_VERSION
    ide_version: str = DEFAULT_IDE_VERSION
    ide_commit: str = DEFAULT_IDE_COMMIT
    cli_version: str = DEFAULT_CLI_VERSION
    # Look the server config and the current CLI build up now and then (never fatal).
    discover_versions: bool = True
    discover_interval: float = 6 * 3600.0
    # Cursor's public CLI installer, which names the current build ("" turns the lookup off).
    cli_install_url: str = "https://cursor.com/install"
    # pyqwest's HTTP/2 can fail under many small frames (python-stack.md, P14): allow forcing HTTP/1.1
    # for the legacy dialect and unary calls. The bidi dialects need HTTP/2 and ignore it.
    upstream_http1: bool = False
    # Seconds with no frame from upstream before a stream is declared stalled.
    upstream_idle_timeout: float = 60.0
    # Seconds to establish the upstream connection and receive the first frame.
    upstream_connect_timeout: float = 30.0
    # Attempts per request across accounts, for failures before the first byte.
    upstream_attempts: int = 3
    timezone: str = "UTC"
    ghost_mode: bool = True

    image_max_bytes: int = 8 * 1024 * 1024
    image_fetch_timeout: float = 10.0
    # Image URLs that resolve to private, loopback or link-local addresses are refused (SSRF);
    # allow them only when every caller is trusted.
    image_fetch_private: bool = False

    log_level: str = "INFO"
    # "text", or "json": one JSON object per line, with the request id (core/logs.py).
    log_format: LogFormat = "text"

    # Redis shared by core replicas (redis://host:6379/0): account cooldowns reach every replica at
    # once (core/shared.py). Empty: cooldowns stay per process (one machine).
    redis_url: str = ""
    # Seconds a concurrency slot outlives the replica that held it (renewed every third of it).
    redis_slot_ttl: float = Field(default=30.0, gt=0)

    # Prometheus `/metrics` on its own HTTP port (0: off); bound to grpc_host.
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    # Seconds that calls in flight get to finish after SIGTERM (health is NOT_SERVING at once and
    # new calls are refused); then the rest are cancelled and the process exits.
    drain_timeout: float = Field(default=30.0, ge=0)

    # Persistence (core only): SQLite file by default, postgresql+asyncpg://... for replicas.
    database_url: str = DEFAULT_DATABASE_URL
    # Seconds between scheduled refreshes of every account's details (models, usage, plan).
    refresh_interval: float = 1800.0
    # Seconds between re-reads of licenses and accounts from the store (other replicas' changes).
    store_sync_interval: float = 30.0
    # Seconds between background writes of request log rows and counters.
    store_flush_interval: float = 0.5
    # Rows of the request log kept; older ones are deleted.
    request_log_max_rows: int = 10_000

    @field_validator("upstream_dialect")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in DIALECTS:
            raise ValueError(f"must be one of {', '.join(DIALECTS)}")
        return value

    @property
    def agent_base_url(self) -> str:
        if self.agent_url:
            return self.agent_url
        return DEFAULT_AGENT_URL if self.upstream_url == DEFAULT_UPSTREAM_URL else self.upstream_url

    @field_validator("licenses", mode="before")
    @classmethod
    def _split_licenses(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @cached_property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"
