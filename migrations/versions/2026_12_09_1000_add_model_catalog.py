"""The model catalog and estimated costs (contract 1.1, "Models"):

- `models`: a model's limits and prices per (provider, name), `mdl_` ids;
- `model_seeds`: each source the catalog was seeded from (the service seeds it after
  migrating, `services.api.catalog.seed`; this migration inserts no model);
- `outcomes.estimated_cost_usd`: the exact cost the service estimated for an outcome
  reported without one (NULL: reported, or no price known); nullable without a default,
  so adding it rewrites nothing;
- `usage_totals` and `experiment_arm_totals` gain `cost_usd` (the known costs, summed) and
  `estimated_cost_usd` (the estimated part), with a constant default (no rewrite);
  statement triggers `outcomes_cost_*` keep the arm totals' two sums, as
  `outcomes_count_*` keep the rest. Triggers of one event fire in name order, so on a
  DELETE the costs are subtracted before `outcomes_count_deleted` forgets emptied arms.

Reported costs (doubles) are summed as PostgreSQL's numeric cast gives them (15
significant digits); the costs already stored are added up here, under a share lock on
outcomes so none is counted twice or missed.

Revision ID: c8e0a2b4d6f9
Revises: f6a8c0e2b4d7
Create Date: 2026-12-09 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c8e0a2b4d6f9"
down_revision: str | None = "f6a8c0e2b4d7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(40, collation="C")
# Written out (not imported) so this file stays as it is; services.api.models holds the same.
PROVIDER_RE = "^[a-z0-9][a-z0-9._-]{0,63}$"

# An outcome's known cost: its estimate, exact, else the cost it reported.
_COST = "coalesce(estimated_cost_usd, cost_usd::numeric)"


def _sums(rows: str) -> str:
    return (
        f"SELECT experiment_id, coalesce(variant_id, '') AS variant_key,"
        f"       coalesce(sum({_COST}), 0) AS cost, coalesce(sum(estimated_cost_usd), 0) AS estimated"
        f"  FROM {rows} WHERE experiment_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
    )


COUNT_COSTS = f"""
CREATE FUNCTION outcomes_count_costs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    UPDATE experiment_arm_totals AS t
       SET cost_usd = t.cost_usd - c.cost, estimated_cost_usd = t.estimated_cost_usd - c.estimated
      FROM ({_sums("old_rows")}) AS c
     WHERE t.experiment_id = c.experiment_id AND t.variant_key = c.variant_key;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    -- The arm's other totals are `outcomes_count_inserted`'s: zeros here, added to there.
    INSERT INTO experiment_arm_totals AS t (experiment_id, variant_key, outcomes, input_tokens, output_tokens,
                                            judged, successes, scored, score_sum, score_sumsq,
                                            cost_usd, estimated_cost_usd)
    SELECT experiment_id, variant_key, 0, 0, 0, 0, 0, 0, 0, 0, cost, estimated FROM ({_sums("new_rows")}) AS c
    ON CONFLICT (experiment_id, variant_key) DO UPDATE SET
        cost_usd = t.cost_usd + EXCLUDED.cost_usd,
        estimated_cost_usd = t.estimated_cost_usd + EXCLUDED.estimated_cost_usd;
  END IF;
  RETURN NULL;
END
$$
"""

TRIGGERS = (
    "CREATE TRIGGER outcomes_cost_inserted AFTER INSERT ON outcomes REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_costs()",
    "CREATE TRIGGER outcomes_cost_deleted AFTER DELETE ON outcomes REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_costs()",
    "CREATE TRIGGER outcomes_cost_updated AFTER UPDATE ON outcomes"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_costs()",
)


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "models",
        sa.Column("id", ID, nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("context_window", sa.Integer(), nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=True),
        sa.Column("input_usd_per_mtok", sa.Numeric(), nullable=True),
        sa.Column("output_usd_per_mtok", sa.Numeric(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("provider", "name", name=op.f("uq_models_provider_name")),
        sa.CheckConstraint(f"provider ~ '{PROVIDER_RE}'", name=op.f("ck_models_provider_format")),
        sa.CheckConstraint("char_length(name) BETWEEN 1 AND 256", name=op.f("ck_models_name_length")),
        sa.CheckConstraint("context_window BETWEEN 1 AND 100000000", name=op.f("ck_models_context_window_range")),
        sa.CheckConstraint("max_output_tokens BETWEEN 1 AND 10000000", name=op.f("ck_models_max_output_tokens_range")),
        sa.CheckConstraint("input_usd_per_mtok >= 0", name=op.f("ck_models_input_usd_per_mtok_range")),
        sa.CheckConstraint("output_usd_per_mtok >= 0", name=op.f("ck_models_output_usd_per_mtok_range")),
    )
    op.create_table(
        "model_seeds",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("seeded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_model_seeds")),
    )
    op.add_column("outcomes", sa.Column("estimated_cost_usd", sa.Numeric(), nullable=True))
    for table in ("usage_totals", "experiment_arm_totals"):
        for column in ("cost_usd", "estimated_cost_usd"):
            op.add_column(table, sa.Column(column, sa.Numeric(), server_default="0", nullable=False))
    op.execute(COUNT_COSTS)
    # Outcomes are stored under a share lock on the table meanwhile, so none is counted twice or missed.
    op.execute("LOCK TABLE outcomes IN SHARE MODE")
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.execute(
        "UPDATE experiment_arm_totals AS t SET cost_usd = c.cost"
        " FROM (SELECT experiment_id, coalesce(variant_id, '') AS variant_key, sum(cost_usd::numeric) AS cost"
        "         FROM outcomes WHERE experiment_id IS NOT NULL AND cost_usd IS NOT NULL GROUP BY 1, 2) AS c"
        " WHERE t.experiment_id = c.experiment_id AND t.variant_key = c.variant_key"
    )
    op.execute(
        "UPDATE usage_totals AS t SET cost_usd = c.cost"
        " FROM (SELECT agent_id, environment_id, coalesce(variant_id, '') AS variant_key,"
        "              sum(cost_usd::numeric) AS cost"
        "         FROM outcomes WHERE cost_usd IS NOT NULL GROUP BY 1, 2, 3) AS c"
        " WHERE t.agent_id = c.agent_id AND t.environment_id = c.environment_id AND t.variant_key = c.variant_key"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for trigger in ("inserted", "deleted", "updated"):
        op.execute(f"DROP TRIGGER outcomes_cost_{trigger} ON outcomes")
    op.execute("DROP FUNCTION outcomes_count_costs()")
    for table in ("usage_totals", "experiment_arm_totals"):
        for column in ("cost_usd", "estimated_cost_usd"):
            op.drop_column(table, column)
    # The estimates stay as the outcomes' `cost_usd`, as an older version would have them reported.
    op.drop_column("outcomes", "estimated_cost_usd")
    op.drop_table("model_seeds")
    op.drop_table("models")
