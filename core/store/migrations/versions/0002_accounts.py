"""Accounts remember their upstream dialect (an operator's pin, what auto-probing found) and the
credentials that renew their access token (refresh token, user API key), with renewal state.

Revision ID: 0002_accounts
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_accounts"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("dialect", sa.String(20), nullable=False, server_default="auto"))
        batch.add_column(sa.Column("dialect_state", sa.JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("refresh_token", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("api_key", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("auth_state", sa.JSON, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("auth_state")
        batch.drop_column("api_key")
        batch.drop_column("refresh_token")
        batch.drop_column("dialect_state")
        batch.drop_column("dialect")
