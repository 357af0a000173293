"""Core settings, read from the environment (and an optional env file).

The variable names are a public interface: keep them stable.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# "Outdated client" is the most common breakage in the field; 2.3.41 is the newest IDE version
# the public record has seen (docs/cursor-protocol.md). Override with CURSORGATE_CLIENT_VERSION.
DEFAULT_CLIENT_VERSION = "2.3.41"
DEFAULT_UPSTREAM_URL = "https://api2.cursor.sh"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/cursorgate.db"
MIN_ADMIN_KEY = 16


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
    # Core refuses to start with an admin key shorter than MIN_ADMIN_KEY characters unless this
    # is set (CURSORGATE_ALLOW_WEAK_ADMIN_KEY=1): the admin API hands out licenses and tokens.
    allow_weak_admin_key: bool = False

    # Requests one license may have open at once (0: no limit); 429 above it.
    license_max_concurrent: int = 0

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # PEM files: CERT and KEY turn TLS on for the gRPC port; CA also requires client certificates
    # signed by it (mutual TLS). The facade reads the same variables for its channel to core.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    grpc_tls_ca: Path | None = None

    upstream_url: str = DEFAULT_UPSTREAM_URL
    client_version: str = DEFAULT_CLIENT_VERSION
    # pyqwest's HTTP/2 can fail under many small frames (python-stack.md, P14): allow forcing HTTP/1.1.
    upstream_http1: bool = False
    # Seconds with no frame from upstream before a stream is declared stalled.
    upstream_idle_timeout: float = 60.0
    # Seconds to establish the upstream connection and receive the first frame.
    upstream_connect_timeout: float = 30.0
    # Seconds one chat request may run at most: a gRPC caller's longer deadline (or none) is cut
    # to this. The facade reads the same variable for the deadline it gives core.
    request_timeout: float = Field(default=600.0, gt=0)
    # Attempts per request across accounts, for failures before the first byte.
    upstream_attempts: int = 3
    timezone: str = "UTC"
    ghost_mode: bool = True

    image_max_bytes: int = 8 * 1024 * 1024
    # Seconds for a whole image fetch (every redirect and the last byte), not per read.
    image_fetch_timeout: float = 10.0
    # Image fetches one license, and one host, may have open at once (others wait their turn
    # within the fetch timeout).
    image_fetch_per_license: int = 4
    image_fetch_per_host: int = 8
    # Image URLs that resolve to private, loopback or link-local addresses are refused (SSRF);
    # allow them only when every caller is trusted.
    image_fetch_private: bool = False

    log_level: str = "INFO"

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

    @field_validator("licenses", mode="before")
    @classmethod
    def _split_licenses(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @cached_property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"


def admin_key_problem(settings: CoreSettings) -> str | None:
    """Why core must not start with this admin key, if it must not."""
    if settings.admin_key is None or settings.allow_weak_admin_key:
        return None
    if len(settings.admin_key.get_secret_value()) < MIN_ADMIN_KEY:
        return (
            f"CURSORGATE_ADMIN_KEY is shorter than {MIN_ADMIN_KEY} characters; use a long random key "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or set "
            "CURSORGATE_ALLOW_WEAK_ADMIN_KEY=1 to start anyway."
        )
    return None
