"""Licenses, accounts and the request log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "licenses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(32), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("allowed_models", sa.JSON, nullable=True),
        sa.Column("request_quota", sa.BigInteger, nullable=True),
        sa.Column("requests_used", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(200), nullable=False, server_default=""),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("client_version", sa.String(40), nullable=True),
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("last_refreshed_at", sa.Float, nullable=True),
        sa.Column("cooldown_until", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "request_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("license_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("license_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("model", sa.String(200), nullable=False, server_default=""),
        sa.Column("account_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("latency_ms", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("outcome", sa.String(64), nullable=False, server_default="ok"),
        sa.Column("stream", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_request_log_time", "request_log", ["time"])


def downgrade() -> None:
    op.drop_index("ix_request_log_time", table_name="request_log")
    op.drop_table("request_log")
    op.drop_table("accounts")
    op.drop_table("licenses")
