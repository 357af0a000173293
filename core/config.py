"""Core settings, read from the environment (and an optional env file).

The variable names are a public interface: keep them stable.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.chat.aliases import AliasTable, parse_aliases
from core.observability.logs import LogFormat

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
    # Seals Cursor tokens, refresh tokens and API keys in the database (AES-256-GCM); at least 16
    # characters, random (e.g. `openssl rand -base64 32`). Rotate with `cursorgate secrets rotate`.
    secret_key: SecretStr | None = None
    # Core refuses to start with an admin key shorter than MIN_ADMIN_KEY characters unless this
    # is set (CURSORGATE_ALLOW_WEAK_ADMIN_KEY=1): the admin API hands out licenses and tokens.
    allow_weak_admin_key: bool = False

    # Requests one license may have open at once (0: no limit); 429 above it.
    license_max_concurrent: int = 0
    # Seconds added to the clock that license limits and budget periods follow. For tests only
    # (a budget's period reset without waiting for midnight); leave it at 0.
    limits_clock_offset: float = 0.0
    # Admission control (core/pool/admission.py): chat calls this core serves upstream at once (0: no
    # limit), how many more may wait for a slot, and how many seconds they may wait; past that,
    # a retryable refusal (gRPC RESOURCE_EXHAUSTED / ERROR_CODE_OVERLOADED, HTTP 503 + Retry-After).
    max_streams: int = Field(default=2048, ge=0)
    stream_queue: int = Field(default=256, ge=0)
    stream_queue_timeout: float = Field(default=5.0, gt=0)
    # Upstream streams one Cursor account carries at once (0: no limit): a full account is
    # skipped for another; with every account full, the call is refused like above.
    max_streams_per_account: int = Field(default=0, ge=0)

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # PEM files: CERT and KEY turn TLS on for the gRPC port; CA also requires client certificates
    # signed by it (mutual TLS). The facade reads the same variables for its channel to core.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    grpc_tls_ca: Path | None = None

    upstream_url: str = DEFAULT_UPSTREAM_URL
    # Cursor's auth endpoints (/oauth/token, /auth/poll, /auth/exchange_user_api_key); empty: upstream_url.
    auth_url: str = ""
    # Where `cursorgate login` sends the user to sign in (the CLI's loginDeepControl page).
    login_url: str = "https://cursor.com"
    # The public desktop client id for the refresh_token grant (agent-protocol.md §6).
    oauth_client_id: str = "KbZUR41cY7W6zRSdpSUJ7I7mLYBKOCmB"
    # Seconds before an access token's exp at which it is renewed.
    token_renew_before: float = 300.0
    # A proxy for every call to Cursor: chat, models, usage, login and renewal
    # (http://, https://, socks5://, socks5h://; credentials in the URL). "": direct.
    upstream_proxy: str = ""

    @field_validator("upstream_proxy")
    @classmethod
    def _proxy_url(cls, value: str) -> str:
        value = value.strip()
        if value and urlsplit(value).scheme not in ("http", "https", "socks5", "socks5h"):
            raise ValueError("must be an http://, https://, socks5:// or socks5h:// URL")
        if value and not urlsplit(value).hostname:
            raise ValueError("must name the proxy's host")
        return value

    # Seconds an account proxy that refused a connection is left alone (its accounts skipped, not
    # penalised) before it is tried again.
    proxy_retry_after: float = Field(default=30.0, gt=0)
    # An account whose plan is at least this percent used (GetCurrentPeriodUsage's
    # planUsage.totalPercentUsed, as last refreshed) is "near its limit": the pool routes to it
    # only when no other account can serve. 0: off.
    pool_near_limit_percent: float = Field(default=90.0, ge=0, le=100)
    # Conversation affinity: the same conversation (OpenAI prompt_cache_key/user, Anthropic
    # metadata.user_id, else a hash of its first messages) goes to the same account while that
    # account is healthy, so Cursor's prompt cache helps. Remembered for this many conversations;
    # with a Redis URL, shared by every core replica (core/shared/state.py).
    pool_affinity: bool = False
    pool_affinity_entries: int = Field(default=10_000, ge=1)
    # Seconds an admin-API login (POST /cursor/admin/api/accounts/login) waits for the sign-in.
    account_login_timeout: float = Field(default=600.0, gt=0, le=3600)

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
    # Seconds one chat request may run at most: a gRPC caller's longer deadline (or none) is cut
    # to this. The facade reads the same variable for the deadline it gives core.
    request_timeout: float = Field(default=600.0, gt=0)
    # Attempts per request across accounts, for failures before the first byte.
    upstream_attempts: int = 3
    timezone: str = "UTC"
    ghost_mode: bool = True

    image_max_bytes: int = 8 * 1024 * 1024
    # Per file part (PDF or text), decoded or fetched; over it: 413. Cursor refuses a request
    # over 4 MiB, and a PDF travels base64-encoded on the inference dialect (4/3 of its size).
    file_max_bytes: int = Field(default=2 * 1024 * 1024, ge=0)
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
    # "text", or "json": one JSON object per line, with the request id (core/observability/logs.py).
    log_format: LogFormat = "text"

    # Redis shared by core replicas (redis://host:6379/0): account cooldowns reach every replica at
    # once (core/shared/state.py). Empty: cooldowns stay per process (one machine).
    redis_url: str = ""
    # Seconds a concurrency slot, or a lease counting a call in flight on an account for
    # least-loaded routing (core/shared/load.py), outlives the replica that held it (renewed every
    # third of it).
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
    # Responses API objects kept for `previous_response_id` and GET (`store: true`): at most this
    # many (oldest go first), each for this many seconds (OpenAI keeps them 30 days).
    response_store_max_rows: int = 10_000
    response_store_ttl: float = 30 * 86_400.0

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

    # Model aliases on top of the built-in ones (core/chat/aliases.py), JSON:
    # {"alias": "model"} or {"alias": ["first choice", "fallback"]}. Checked at start.
    model_aliases: str = ""

    @field_validator("model_aliases")
    @classmethod
    def _check_aliases(cls, value: str) -> str:
        # Parsed again where used; here so that a bad table stops core at start with a clear error.
        AliasTable(env=parse_aliases(value))
        return value

    @cached_property
    def alias_table(self) -> dict[str, tuple[str, ...]]:
        return parse_aliases(self.model_aliases)

    @field_validator("licenses", mode="before")
    @classmethod
    def _split_licenses(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @cached_property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"


def settings_problems(err: ValidationError) -> str:
    """A ValidationError as one line per variable, without the values (they may be secrets)."""
    lines = []
    for problem in err.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "?"
        name = "CURSOR_TOKEN" if field == "cursor_token" else f"CURSORGATE_{field.upper()}"
        lines.append(f"  {name}: {problem['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def load_settings() -> CoreSettings:
    """The settings, or a clean exit naming each bad variable (no traceback, no values)."""
    try:
        return CoreSettings()
    except ValidationError as err:
        raise SystemExit(f"cursorgate core: invalid configuration:\n{settings_problems(err)}") from None


class SupervisorSettings(BaseSettings):
    """`cursorgate run`'s restart policy (the supervisor only; the children ignore these)."""

    model_config = SettingsConfigDict(
        env_prefix="CURSORGATE_", env_file=os.environ.get("CURSORGATE_ENV_FILE", ".env"), extra="ignore"
    )

    # Seconds before the first restart of a child that died; doubled for each further crash
    # within the crash-loop window, up to restart_backoff_max.
    restart_backoff: float = Field(default=0.5, ge=0)
    restart_backoff_max: float = Field(default=30.0, ge=0)
    # This many crashes of one child within crash_loop_window seconds end the run (exit 1).
    crash_loop_crashes: int = Field(default=5, ge=1)
    crash_loop_window: float = Field(default=60.0, gt=0)
    # Seconds a (re)started child has to answer its readiness probe before it counts as crashed.
    start_timeout: float = Field(default=60.0, gt=0)
    # Core and facade in one process (`python -m core.combined`) instead of two; the facade still
    # reaches core over its gRPC port. See the README's "One process or two".
    one_process: bool = False
    # JSON file the supervisor keeps its children's state in (the facade's /healthz reads it);
    # empty: a file in a private temporary directory, removed at exit.
    supervisor_status_file: str = ""


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
