"""Add idempotency_keys.effects: a request's committed results, saved in their own
transactions, so a retry after the process died replays them instead of acting again.

Revision ID: f6c8d0e2b4a6
Revises: e5b7c9d1a3f2
Create Date: 2026-12-06 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "f6c8d0e2b4a6"
down_revision: str | None = "e5b7c9d1a3f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column("idempotency_keys", sa.Column("effects", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("idempotency_keys", "effects")
