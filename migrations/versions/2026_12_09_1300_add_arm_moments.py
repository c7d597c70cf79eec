"""Add the arm totals' remaining moments, for results' always-valid intervals (issue 20):

- `experiment_arm_totals` gains `latency_ms_sum`, `latency_ms_sumsq` (every outcome has a
  latency, so their count is `outcomes`), `output_tokens_sumsq` (likewise) and `costed` (the
  outcomes with a known cost: reported or estimated) with `cost_usd_sumsq` (`cost_usd` already
  sums the same costs), all with a constant default (no rewrite);
- statement triggers `outcomes_moments_*` keep them, as `outcomes_cost_*` keep the costs.

Values are summed as PostgreSQL's numeric cast gives them (doubles to 15 significant digits;
bigints and estimated costs exactly), and squared exactly. Latencies count clamped to the
API's bounds [0, 1e12] (NaN as 1e12), as scores are: rows stored before the bounds stay finite.
The outcomes already stored are added up here, under a share lock on outcomes so none is
counted twice or missed.

Revision ID: d9f1b3c5e7a0
Revises: e1a3c5e7b9d2
Create Date: 2026-12-09 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d9f1b3c5e7a0"
down_revision: str | None = "e1a3c5e7b9d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out (not imported) so this file stays as it is; migration c8e0a2b4d6f9 holds the same.
_COST = "coalesce(estimated_cost_usd, cost_usd::numeric)"
_LATENCY = "greatest(least(latency_ms, float8 '1e12'), float8 '0')::numeric"

COLUMNS = (
    ("latency_ms_sum", sa.Numeric()),
    ("latency_ms_sumsq", sa.Numeric()),
    ("output_tokens_sumsq", sa.Numeric()),
    ("costed", sa.BigInteger()),
    ("cost_usd_sumsq", sa.Numeric()),
)


def _sums(rows: str) -> str:
    return (
        "SELECT experiment_id, variant_key, sum(l) AS l, sum(l * l) AS l2, sum(o * o) AS o2,"
        "       count(c) AS c, coalesce(sum(c * c), 0) AS c2"
        f"  FROM (SELECT experiment_id, coalesce(variant_id, '') AS variant_key, {_LATENCY} AS l,"
        f"               output_tokens::numeric AS o, {_COST} AS c"
        f"          FROM {rows} WHERE experiment_id IS NOT NULL) AS v"
        "  GROUP BY 1, 2 ORDER BY 1, 2"
    )


COUNT_MOMENTS = f"""
CREATE FUNCTION outcomes_count_moments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    UPDATE experiment_arm_totals AS t
       SET latency_ms_sum = t.latency_ms_sum - m.l, latency_ms_sumsq = t.latency_ms_sumsq - m.l2,
           output_tokens_sumsq = t.output_tokens_sumsq - m.o2, costed = t.costed - m.c,
           cost_usd_sumsq = t.cost_usd_sumsq - m.c2
      FROM ({_sums("old_rows")}) AS m
     WHERE t.experiment_id = m.experiment_id AND t.variant_key = m.variant_key;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    -- The arm's other totals are the other triggers': zeros here, added to there.
    INSERT INTO experiment_arm_totals AS t (experiment_id, variant_key, outcomes, input_tokens, output_tokens,
                                            judged, successes, scored, score_sum, score_sumsq,
                                            latency_ms_sum, latency_ms_sumsq, output_tokens_sumsq, costed,
                                            cost_usd_sumsq)
    SELECT experiment_id, variant_key, 0, 0, 0, 0, 0, 0, 0, 0, l, l2, o2, c, c2 FROM ({_sums("new_rows")}) AS m
    ON CONFLICT (experiment_id, variant_key) DO UPDATE SET
        latency_ms_sum = t.latency_ms_sum + EXCLUDED.latency_ms_sum,
        latency_ms_sumsq = t.latency_ms_sumsq + EXCLUDED.latency_ms_sumsq,
        output_tokens_sumsq = t.output_tokens_sumsq + EXCLUDED.output_tokens_sumsq,
        costed = t.costed + EXCLUDED.costed,
        cost_usd_sumsq = t.cost_usd_sumsq + EXCLUDED.cost_usd_sumsq;
  END IF;
  RETURN NULL;
END
$$
"""

# Triggers of one event fire in name order: on a DELETE these subtract before
# `outcomes_count_deleted` forgets emptied arms (were it the other way round, the UPDATE would
# find no row, which is as right).
TRIGGERS = (
    "CREATE TRIGGER outcomes_moments_inserted AFTER INSERT ON outcomes REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_moments()",
    "CREATE TRIGGER outcomes_moments_deleted AFTER DELETE ON outcomes REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_moments()",
    "CREATE TRIGGER outcomes_moments_updated AFTER UPDATE ON outcomes"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_moments()",
)


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for name, kind in COLUMNS:
        op.add_column("experiment_arm_totals", sa.Column(name, kind, server_default="0", nullable=False))
    op.execute(COUNT_MOMENTS)
    # Outcomes are stored under a share lock on the table meanwhile, so none is counted twice or missed.
    op.execute("LOCK TABLE outcomes IN SHARE MODE")
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.execute(
        "UPDATE experiment_arm_totals AS t"
        "   SET latency_ms_sum = m.l, latency_ms_sumsq = m.l2, output_tokens_sumsq = m.o2, costed = m.c,"
        "       cost_usd_sumsq = m.c2"
        f" FROM ({_sums('outcomes')}) AS m"
        " WHERE t.experiment_id = m.experiment_id AND t.variant_key = m.variant_key"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for trigger in ("inserted", "deleted", "updated"):
        op.execute(f"DROP TRIGGER outcomes_moments_{trigger} ON outcomes")
    op.execute("DROP FUNCTION outcomes_count_moments()")
    for name, _ in reversed(COLUMNS):
        op.drop_column("experiment_arm_totals", name)
