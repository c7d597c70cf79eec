"""Add usage totals: each agent's outcomes summed per variant, so /usage reads a few rows.

Revision ID: d8e2a4c6f1b3
Revises: c3d1f7a9e2b4
Create Date: 2026-11-23 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d8e2a4c6f1b3"
down_revision: str | None = "c3d1f7a9e2b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "usage_totals",
        sa.Column("agent_id", sa.String(40, collation="C"), nullable=False),
        sa.Column("variant_key", sa.String(40, collation="C"), nullable=False),
        sa.Column("outcomes", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.Numeric(40, 0), nullable=False),
        sa.Column("output_tokens", sa.Numeric(40, 0), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_usage_totals_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("agent_id", "variant_key", name=op.f("pk_usage_totals")),
    )
    # Outcomes are stored under a share lock on the table meanwhile, so none is counted twice or missed.
    op.execute("LOCK TABLE outcomes IN SHARE MODE")
    op.execute(
        "INSERT INTO usage_totals (agent_id, variant_key, outcomes, input_tokens, output_tokens)"
        " SELECT agent_id, coalesce(variant_id, ''), count(*), sum(input_tokens), sum(output_tokens)"
        " FROM outcomes GROUP BY agent_id, coalesce(variant_id, '')"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_table("usage_totals")
