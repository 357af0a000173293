"""The request log learns time to first token and the key prefix of rejected requests.

Revision ID: 0003_request_log
Revises: 0002_responses
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_request_log"
down_revision = "0002_responses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("request_log", sa.Column("key_prefix", sa.String(32), nullable=False, server_default=""))
    op.add_column("request_log", sa.Column("ttft_ms", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("request_log", "ttft_ms")
    op.drop_column("request_log", "key_prefix")
