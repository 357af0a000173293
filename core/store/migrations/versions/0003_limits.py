"""Per-license rate limits (requests and tokens per minute) and token budgets with their period
and usage (core/licensing/limits.py).

Revision ID: 0003_limits
Revises: 0002_responses
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_limits"
down_revision = "0003_request_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.add_column(sa.Column("rpm_limit", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tpm_limit", sa.Integer, nullable=True))
        batch.add_column(sa.Column("token_budget", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("budget_period", sa.String(8), nullable=False, server_default=""))
        batch.add_column(sa.Column("budget_used", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("budget_period_start", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("budget_period_start")
        batch.drop_column("budget_used")
        batch.drop_column("budget_period")
        batch.drop_column("token_budget")
        batch.drop_column("tpm_limit")
        batch.drop_column("rpm_limit")
