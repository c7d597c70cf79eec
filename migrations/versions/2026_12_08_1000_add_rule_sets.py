"""Add rule sets (contract 1.1, "Targeting rules and context"): an agent's ordered rules
per environment, replaced whole, and `rule_set` as a revision target.

A row exists once a set has been written (a set never written is version 0, with no
rules). Purging the agent removes its sets (cascade). An environment whose sets are all
empty may be deleted, and takes those empty rows with it (cascade); one with rules is in
use (the service refuses the deletion, `environment_in_use`).

Revision ID: c3d5f7a9b1e2
Revises: b2c4e6a8d0f1
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c3d5f7a9b1e2"
down_revision: str | None = "b2c4e6a8d0f1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(40, collation="C")


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "rule_sets",
        sa.Column("agent_id", ID, nullable=False),
        sa.Column("environment_id", ID, nullable=False),
        sa.Column("rules", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_rule_sets_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_rule_sets_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "environment_id", name=op.f("pk_rule_sets")),
    )
    # "Is this environment ruled?" (deleting an environment) without a scan of every agent's sets.
    op.create_index(op.f("ix_rule_sets_environment_id"), "rule_sets", ["environment_id"])
    op.drop_constraint(op.f("ck_revisions_target"), "revisions", type_="check")
    op.create_check_constraint(
        op.f("ck_revisions_target"), "revisions", "target IN ('agent', 'variant', 'experiment', 'rule_set')"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DELETE FROM revisions WHERE target = 'rule_set'")
    op.drop_constraint(op.f("ck_revisions_target"), "revisions", type_="check")
    op.create_check_constraint(op.f("ck_revisions_target"), "revisions", "target IN ('agent', 'variant', 'experiment')")
    op.drop_index(op.f("ix_rule_sets_environment_id"), table_name="rule_sets")
    op.drop_table("rule_sets")
