"""Model aliases set through the admin API, and the requested model in the request log.

Revision ID: 0002_aliases
Revises: 0002_accounts
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_aliases"
down_revision = "0002_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.add_column(
        "request_log",
        sa.Column("requested_model", sa.String(200), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("request_log", "requested_model")
    op.drop_table("model_aliases")
