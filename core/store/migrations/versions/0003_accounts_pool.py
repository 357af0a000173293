"""Accounts get their own outbound proxy (sealed like the tokens when CURSORGATE_SECRET_KEY is set).

Revision ID: 0003_accounts_pool
Revises: 0002_responses
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_accounts_pool"
down_revision = "0003_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("proxy", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("proxy")
