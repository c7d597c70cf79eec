"""Add revisions (history, undo, time travel) and idempotency keys.

Revision ID: 8e2d4b6a1f30
Revises: 3c1f9a2b7d10
Create Date: 2026-11-22 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "8e2d4b6a1f30"
down_revision: str | None = "3c1f9a2b7d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.String:
    return sa.String(40, collation="C")


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "revisions",
        sa.Column("id", _id(), nullable=False),
        sa.Column("agent_id", _id(), nullable=False),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("target_id", _id(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("api_key", sa.Text(), nullable=True),
        sa.Column("active_variant_id", _id(), nullable=True),
        sa.Column("before", postgresql.JSONB(), nullable=True),
        sa.Column("after", postgresql.JSONB(), nullable=True),
        sa.Column("reverts_id", _id(), nullable=True),
        sa.Column("undone_by_id", _id(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisions")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_revisions_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.CheckConstraint("target IN ('agent', 'variant', 'experiment')", name=op.f("ck_revisions_target")),
    )
    op.create_index("ix_revisions_agent_id_created_at_id", "revisions", ["agent_id", "created_at", "id"])
    op.create_index("ix_revisions_target_id_created_at_id", "revisions", ["target_id", "created_at", "id"])
    op.create_index("ix_revisions_agent_id_id", "revisions", ["agent_id", "id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_headers", postgresql.JSONB(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
        sa.CheckConstraint("state IN ('in_flight', 'done')", name=op.f("ck_idempotency_keys_state")),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_table("idempotency_keys")
    op.drop_table("revisions")
