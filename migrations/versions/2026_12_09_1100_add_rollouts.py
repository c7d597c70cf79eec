"""Rollouts (contract 1.1, "Splits: experiments and rollouts"): a split of `kind` `rollout`
ships one variant step by step, guarded by outcomes.

- `experiments.kind` (`experiment` for every row so far), `steps`, `guardrails`,
  `min_outcomes`, the step in force (`step`, from 0) and since when (`step_started_at`), and
  `status_reason`; statuses add `paused`, `completed` and `rolled_back`, and the one-split
  rule of the partial unique index counts a paused rollout too (it keeps serving).
- `outcomes.step`: the step in force when a rollout's outcome arrived (null otherwise).
- `rollout_step_totals`: a rollout's outcomes summed per arm and step, each metric's count,
  sum and sum of squares, so a guardrail's confidence sequence reads a few rows.
- `rollout_guardrail_history`: the guardrails' figures over time.

Revision ID: d9f1b3c5e7a2
Revises: c8e0a2b4d6f9
Create Date: 2026-12-09 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "d9f1b3c5e7a2"
down_revision: str | None = "c8e0a2b4d6f9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(40, collation="C")
METRICS = ("score", "latency", "cost", "output")
ONE_SPLIT = "uq_experiments_one_running_per_agent_environment"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column("experiments", sa.Column("kind", sa.String(16), server_default="experiment", nullable=False))
    op.create_check_constraint(op.f("ck_experiments_kind"), "experiments", "kind IN ('experiment', 'rollout')")
    for name, kind in (("steps", JSONB), ("guardrails", JSONB), ("min_outcomes", sa.Integer)):
        op.add_column("experiments", sa.Column(name, kind, nullable=True))
    op.add_column("experiments", sa.Column("step", sa.Integer, nullable=True))
    op.add_column("experiments", sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("experiments", sa.Column("status_reason", sa.Text, nullable=True))
    op.drop_constraint(op.f("ck_experiments_status"), "experiments", type_="check")
    op.create_check_constraint(
        op.f("ck_experiments_status"),
        "experiments",
        "status IN ('draft', 'running', 'paused', 'stopped', 'completed', 'rolled_back')",
    )
    op.drop_index(ONE_SPLIT, table_name="experiments")
    op.create_index(
        ONE_SPLIT,
        "experiments",
        ["agent_id", "environment_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('running', 'paused')"),
    )
    # The scheduler's question, "which rollouts are due?", over the few that are live.
    op.create_index(
        "ix_experiments_live_rollouts",
        "experiments",
        ["id"],
        postgresql_where=sa.text("kind = 'rollout' AND status IN ('running', 'paused')"),
    )
    op.add_column("outcomes", sa.Column("step", sa.Integer, nullable=True))
    op.create_table(
        "rollout_step_totals",
        sa.Column("experiment_id", ID, nullable=False),
        sa.Column("arm", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("judged", sa.BigInteger, server_default="0", nullable=False),
        sa.Column("successes", sa.BigInteger, server_default="0", nullable=False),
        *(
            column
            for metric in METRICS
            for column in (
                sa.Column(f"{metric}_n", sa.BigInteger, server_default="0", nullable=False),
                sa.Column(f"{metric}_sum", sa.Double, server_default="0", nullable=False),
                sa.Column(f"{metric}_sumsq", sa.Double, server_default="0", nullable=False),
            )
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_rollout_step_totals_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "arm", "step", name=op.f("pk_rollout_step_totals")),
    )
    op.create_table(
        "rollout_guardrail_history",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("experiment_id", ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("percent", sa.Integer, nullable=False),
        sa.Column("guardrails", JSONB, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_rollout_guardrail_history_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_guardrail_history")),
    )
    op.create_index(
        "ix_rollout_guardrail_history_experiment_id_at", "rollout_guardrail_history", ["experiment_id", "at"]
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_rollout_guardrail_history_experiment_id_at", table_name="rollout_guardrail_history")
    op.drop_table("rollout_guardrail_history")
    op.drop_table("rollout_step_totals")
    op.drop_column("outcomes", "step")
    op.drop_index("ix_experiments_live_rollouts", table_name="experiments")
    # v1 experiments know no rollouts: theirs go (with their revisions' objects kept as history).
    op.execute("DELETE FROM experiments WHERE kind = 'rollout'")
    op.drop_index(ONE_SPLIT, table_name="experiments")
    op.create_index(
        ONE_SPLIT,
        "experiments",
        ["agent_id", "environment_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.drop_constraint(op.f("ck_experiments_status"), "experiments", type_="check")
    op.create_check_constraint(
        op.f("ck_experiments_status"), "experiments", "status IN ('draft', 'running', 'stopped')"
    )
    for name in ("status_reason", "step_started_at", "step", "min_outcomes", "guardrails", "steps"):
        op.drop_column("experiments", name)
    op.drop_constraint(op.f("ck_experiments_kind"), "experiments", type_="check")
    op.drop_column("experiments", "kind")
