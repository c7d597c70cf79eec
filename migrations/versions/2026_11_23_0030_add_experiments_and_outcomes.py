"""Add experiments (A/B tests of variants) and outcomes (what each run cost and how it went).

Revision ID: 5b7c0e9d2a41
Revises: 8e2d4b6a1f30
Create Date: 2026-11-23 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5b7c0e9d2a41"
down_revision: str | None = "8e2d4b6a1f30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.String:
    return sa.String(40, collation="C")


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "experiments",
        sa.Column("id", _id(), nullable=False),
        sa.Column("agent_id", _id(), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.String(16), server_default="draft", nullable=False),
        sa.Column("salt", sa.Text(), nullable=False),
        sa.Column("arms", postgresql.JSONB(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('draft', 'running', 'stopped')", name=op.f("ck_experiments_status")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_experiments_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("agent_id", "slug", name=op.f("uq_experiments_agent_id_slug")),
    )
    op.create_index("ix_experiments_agent_id_id", "experiments", ["agent_id", "id"])
    op.create_index(
        "uq_experiments_one_running_per_agent",
        "experiments",
        ["agent_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("agent_id", _id(), nullable=False),
        sa.Column("variant_id", _id(), nullable=True),
        sa.Column("experiment_id", _id(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("input_tokens >= 0 AND output_tokens >= 0", name=op.f("ck_outcomes_tokens")),
        sa.CheckConstraint("latency_ms >= 0", name=op.f("ck_outcomes_latency_ms")),
        sa.CheckConstraint("cost_usd >= 0", name=op.f("ck_outcomes_cost_usd")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_outcomes_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
    )
    op.create_index("ix_outcomes_agent_id_variant_id", "outcomes", ["agent_id", "variant_id"])
    op.create_index(
        "ix_outcomes_experiment_id_variant_id",
        "outcomes",
        ["experiment_id", "variant_id"],
        postgresql_where=sa.text("experiment_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_table("outcomes")
    op.drop_table("experiments")
