"""Stored Responses API objects (previous_response_id, GET/DELETE /v1/responses/{id}).

Revision ID: 0002_responses
Revises: 0002_aliases
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_responses"
down_revision = "0002_aliases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("id", sa.String(100), nullable=False, unique=True),
        sa.Column("license_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False, server_default=""),
        sa.Column("previous_response_id", sa.String(100), nullable=False, server_default=""),
        sa.Column("response_json", sa.Text, nullable=False),
        sa.Column("items_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_responses_expires_at", "responses", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_responses_expires_at", table_name="responses")
    op.drop_table("responses")
