"""Activation per environment (contract 1.1, "Environments"), experiments in an environment,
and revisions that say which environment a change was in.

- `activations`: at most one active variant per agent per environment, by its primary key
  (agent_id, environment_id), so the database guarantees it under any concurrency. Every
  v1 agent's active variant becomes its `production` activation, activated at the same
  instant; `variants.is_active`, `variants.activated_at` and the v1 partial unique index
  go (an activation is no longer a property of the variant alone).
- `revisions.environment_id` (null for changes to shared definitions) and
  `revisions.active_variants` (environment id -> active variant id right after the change,
  the environments with an active variant only). v1 revisions are production's when they
  activate, deactivate, touch an experiment, or undo one of those; their map is
  production's active variant.
- `experiments.environment_id` (v1 experiments are production's); at most one running
  experiment per agent and environment.

Downgrade keeps production's activations as `is_active`, and drops what v1 cannot hold:
other environments' activations, experiments and revisions.

Revision ID: d4e6f8a0b2c3
Revises: c3d5f7a9b1e2
Create Date: 2026-12-08 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d4e6f8a0b2c3"
down_revision: str | None = "c3d5f7a9b1e2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(40, collation="C")
# Written out (not imported) so this file stays as it is; services.shared.identifiers holds the same.
PRODUCTION_ID = "env_00000000000000000000000000"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "activations",
        sa.Column("agent_id", ID, nullable=False),
        sa.Column("environment_id", ID, nullable=False),
        sa.Column("variant_id", ID, nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_activations_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_activations_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_activations_variant_id_variants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("agent_id", "environment_id", name=op.f("pk_activations")),
    )
    # A variant's `active_in`, and the cascade when a variant is deleted.
    op.create_index(op.f("ix_activations_variant_id"), "activations", ["variant_id"])
    # "Is anything active in this environment?" (deleting an environment).
    op.create_index(op.f("ix_activations_environment_id"), "activations", ["environment_id"])
    op.execute(
        f"INSERT INTO activations (agent_id, environment_id, variant_id, activated_at) "
        f"SELECT agent_id, '{PRODUCTION_ID}', id, coalesce(activated_at, updated_at) FROM variants WHERE is_active"
    )
    op.drop_index("uq_variants_one_active_per_agent", table_name="variants")
    op.drop_column("variants", "is_active")
    op.drop_column("variants", "activated_at")

    op.add_column("revisions", sa.Column("environment_id", ID, nullable=True))
    op.add_column("revisions", sa.Column("active_variants", postgresql.JSONB(), nullable=True))
    op.execute(
        f"UPDATE revisions SET environment_id = '{PRODUCTION_ID}' "
        "WHERE action IN ('activate', 'deactivate') OR target = 'experiment'"
    )
    op.execute("UPDATE revisions SET environment_id = target_id WHERE target = 'rule_set'")
    op.execute(
        "UPDATE revisions AS undo SET environment_id = reverted.environment_id FROM revisions AS reverted "
        "WHERE undo.action = 'undo' AND undo.reverts_id = reverted.id"
    )
    op.execute(
        f"UPDATE revisions SET active_variants = CASE WHEN active_variant_id IS NULL THEN '{{}}'::jsonb "
        f"ELSE jsonb_build_object('{PRODUCTION_ID}', active_variant_id) END"
    )
    op.alter_column("revisions", "active_variants", nullable=False)
    op.create_index(
        op.f("ix_revisions_agent_id_environment_id_created_at_id"),
        "revisions",
        ["agent_id", "environment_id", "created_at", "id"],
    )

    op.add_column("experiments", sa.Column("environment_id", ID, nullable=True))
    op.execute(f"UPDATE experiments SET environment_id = '{PRODUCTION_ID}'")
    op.alter_column("experiments", "environment_id", nullable=False)
    op.create_foreign_key(
        op.f("fk_experiments_environment_id_environments"),
        "experiments",
        "environments",
        ["environment_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.drop_index("uq_experiments_one_running_per_agent", table_name="experiments")
    op.create_index(
        "uq_experiments_one_running_per_agent_environment",
        "experiments",
        ["agent_id", "environment_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(op.f("ix_experiments_environment_id"), "experiments", ["environment_id"])


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(f"DELETE FROM experiments WHERE environment_id <> '{PRODUCTION_ID}'")
    op.drop_index(op.f("ix_experiments_environment_id"), table_name="experiments")
    op.drop_index("uq_experiments_one_running_per_agent_environment", table_name="experiments")
    op.create_index(
        "uq_experiments_one_running_per_agent",
        "experiments",
        ["agent_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.drop_constraint(op.f("fk_experiments_environment_id_environments"), "experiments", type_="foreignkey")
    op.drop_column("experiments", "environment_id")

    op.execute(f"DELETE FROM revisions WHERE environment_id <> '{PRODUCTION_ID}' AND target <> 'rule_set'")
    op.drop_index(op.f("ix_revisions_agent_id_environment_id_created_at_id"), table_name="revisions")
    op.drop_column("revisions", "active_variants")
    op.drop_column("revisions", "environment_id")

    op.add_column("variants", sa.Column("is_active", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.add_column("variants", sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE variants SET is_active = true, activated_at = activations.activated_at FROM activations "
        f"WHERE activations.variant_id = variants.id AND activations.environment_id = '{PRODUCTION_ID}'"
    )
    op.create_index(
        "uq_variants_one_active_per_agent",
        "variants",
        ["agent_id"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )
    op.drop_index(op.f("ix_activations_environment_id"), table_name="activations")
    op.drop_index(op.f("ix_activations_variant_id"), table_name="activations")
    op.drop_table("activations")
