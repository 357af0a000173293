"""Accounts remember their upstream dialect: an operator's pin and what auto-probing found.

Revision ID: 0002_dialects
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_dialects"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("dialect", sa.String(20), nullable=False, server_default="auto"))
        batch.add_column(sa.Column("dialect_state", sa.JSON, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("dialect_state")
        batch.drop_column("dialect")
