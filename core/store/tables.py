"""The schema. Changing it means a new migration in core/store/migrations/versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class LicenseRow(Base):
    __tablename__ = "licenses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(32), default="")
    # Unix seconds (floats keep SQLite and PostgreSQL alike and timezone-free).
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    request_quota: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    requests_used: Mapped[int] = mapped_column(BigInteger, default=0)
    # Migration 0003_limits: rate limits and a token budget (core/licensing/limits.py); null: unlimited.
    rpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    token_budget: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    budget_period: Mapped[str] = mapped_column(String(8), default="")
    # Tokens used in the budget period that began at budget_period_start (Unix seconds).
    budget_used: Mapped[int] = mapped_column(BigInteger, default=0)
    budget_period_start: Mapped[float] = mapped_column(Float, default=0.0)


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    # The normalised JWT: it must be stored to be usable (sealed when CURSORGATE_SECRET_KEY is
    # set). Never returned whole, never logged.
    token: Mapped[str] = mapped_column(Text)
    # sha256 of the token: the same token is not added twice.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    client_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # {model id: ModelInfo fields}; null until AvailableModels answered.
    models: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # {"usage": ..., "membership": ...} as Cursor answered.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_refreshed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    cooldown_until: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float)
    # "auto" or a pinned dialect name; what auto found (active dialect, probe results).
    dialect: Mapped[str] = mapped_column(String(20), default="auto")
    dialect_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What renews the access token: an OAuth refresh token, or a user API key (crsr_...) that is
    # exchanged again. Like `token`, sealed when CURSORGATE_SECRET_KEY is set.
    refresh_token: Mapped[str] = mapped_column(Text, default="")
    api_key: Mapped[str] = mapped_column(Text, default="")
    # Renewal bookkeeping: when, how often, the last failure.
    auth_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Migration 0003_accounts_pool: the account's own outbound proxy URL ("": the gateway's
    # route). It may carry a password: sealed like `token` when CURSORGATE_SECRET_KEY is set.
    proxy: Mapped[str] = mapped_column(Text, default="")


class RequestLogRow(Base):
    __tablename__ = "request_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    time: Mapped[float] = mapped_column(Float, index=True)
    license_id: Mapped[str] = mapped_column(String(64), default="")
    license_name: Mapped[str] = mapped_column(String(200), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    account_id: Mapped[str] = mapped_column(String(64), default="")
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(64), default="ok")
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    # Migration 0002_aliases: the name the caller sent when it differs from `model`.
    requested_model: Mapped[str] = mapped_column(String(200), default="")
    # Migration 0003_request_log: the presented key's prefix when no license was found (never
    # the key), and the time to the first answer token (0: none came).
    key_prefix: Mapped[str] = mapped_column(String(32), default="")
    ttft_ms: Mapped[int] = mapped_column(Integer, default=0)


class AliasRow(Base):
    """Model aliases set through the admin API (migration 0002_aliases)."""

    __tablename__ = "model_aliases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    # The target names, in order.
    targets: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)


class ResponseRow(Base):
    """A stored Responses API object (`store: true`): opaque JSON of the facade's, per license."""

    __tablename__ = "responses"

    # Insertion order: the oldest rows go first when the table is over its bound.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(100), unique=True)
    license_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200), default="")
    previous_response_id: Mapped[str] = mapped_column(String(100), default="")
    response_json: Mapped[str] = mapped_column(Text)
    items_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
