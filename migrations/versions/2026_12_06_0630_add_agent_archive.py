"""Add agents.archived_at: deleting an agent archives it (contract 1.1), keeping its history.

Revision ID: e5b7c9d1a3f2
Revises: d8e2a4c6f1b3
Create Date: 2026-12-06 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5b7c9d1a3f2"
down_revision: str | None = "d8e2a4c6f1b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # Nullable, no default: adding it rewrites nothing.
    op.add_column("agents", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # Archived agents were deleted agents before this revision: erase them as a delete did.
    op.execute("DELETE FROM agents WHERE archived_at IS NOT NULL")
    op.drop_column("agents", "archived_at")
