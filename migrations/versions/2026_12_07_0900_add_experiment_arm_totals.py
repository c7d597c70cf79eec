"""Add experiment arm totals and latency bins: what /results needs, kept up to date by
triggers on outcomes, so results read a few rows however many outcomes there are.

- `experiment_arm_totals`: per experiment and arm (variant, "" for the base config) the
  counts, token sums, and the exact sums of scores and of squared scores (`numeric`: each
  double converted exactly, so means and variances are those of the stored rows);
- `experiment_latency_bins`: per arm the count of latencies in each bin of DDSketch's
  logarithmic mapping at 1% relative accuracy (zeros and non-finite latencies apart);
- statement triggers on outcomes that add each INSERT's rows (the API's COPY, a backfill, a
  hand-written INSERT) and subtract each DELETE's (a purge's cascade included), in the
  transaction that changes the rows;
- the index behind exact percentiles (arms of up to 100,000 outcomes): latency joins
  `ix_outcomes_experiment_id_variant_id`.

Existing outcomes are added up here (under a share lock, so none is counted twice or missed).

Revision ID: a7d9f1b3c5e8
Revises: f6c8d0e2b4a6
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7d9f1b3c5e8"
down_revision: str | None = "f6c8d0e2b4a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(40, collation="C")

# ddsketch.mapping.LogarithmicMapping(relative_accuracy=0.01): key(v) = ceil(log2(v) * multiplier),
# multiplier = ln 2 / ln(gamma), gamma = 1.0202... (its `_multiplier`, written out so this file stays
# as it is). `services/api/outcomes/figures.py` maps keys back to values with the same mapping;
# tests/api/test_results_at_scale.py checks both agree. Zero and non-finite latencies get the
# smallest and largest integer, so a scan in key order meets every latency in order.
LATENCY_BIN = """
CREATE FUNCTION latency_bin(latency_ms float8) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE
    WHEN latency_ms = 0 THEN integer '-2147483648'
    WHEN latency_ms < float8 'Infinity' THEN ceil(ln(latency_ms) / ln(float8 '2') * float8 '34.65620375188817')::integer
    ELSE 2147483647  -- infinity, NaN
  END
$$
"""

# 2**e as an exact numeric (2**-k = 5**k / 10**k); numeric products and sums are exact.
POWER_OF_TWO = """
CREATE FUNCTION exact_power_of_two(e integer) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN e >= 0 THEN numeric '2' ^ e ELSE (numeric '5' ^ (-e)) * ('1e' || e)::numeric END
$$
"""

# Scores count clamped to the API's bounds (+-1e12; NaN counts as 1e12, as it sorts above every
# number), as `outcomes.repository` reads them: rows stored before the bounds stay finite.
_SCORE = "greatest(least(score, float8 '1e12'), float8 '-1e12')"


def _add(rows: str, sign: str) -> str:
    """SQL adding (sign 1) or subtracting (sign -1) the outcomes of relation `rows` to the arm
    totals, then the latency bins: each in key order, so concurrent batches lock rows in the
    same order and cannot deadlock (and a batch's transaction then takes usage_totals').

    A score is m * 2**e (m an integer below 2**53): the exact sum of a batch's scores is, over
    its exponents e, (sum of m) * 2**e, and of their squares (sum of m**2) * 2**(2e), with m**2
    summed as hi**2 * 2**52 + hi*lo * 2**27 + lo**2 (m = hi * 2**26 + lo) in exact bigint sums:
    one exact power per exponent, not one numeric conversion per row."""
    return f"""
    INSERT INTO experiment_arm_totals AS t (experiment_id, variant_key, outcomes, input_tokens, output_tokens,
                                            judged, successes, scored, score_sum, score_sumsq)
    SELECT c.experiment_id, c.variant_key, {sign} * c.n, {sign} * c.i, {sign} * c.o, {sign} * c.judged,
           {sign} * c.successes, {sign} * c.scored,
           {sign} * coalesce(s.score_sum, 0), {sign} * coalesce(s.score_sumsq, 0)
      FROM (SELECT experiment_id, coalesce(variant_id, '') AS variant_key, count(*) AS n,
                   sum(input_tokens) AS i, sum(output_tokens) AS o, count(success) AS judged,
                   count(*) FILTER (WHERE success) AS successes, count(score) AS scored
              FROM {rows} WHERE experiment_id IS NOT NULL GROUP BY 1, 2) AS c
      LEFT JOIN (
        SELECT experiment_id, variant_key,
               trim_scale(sum(ms * exact_power_of_two(e))) AS score_sum,
               trim_scale(sum(q * exact_power_of_two(2 * e))) AS score_sumsq
          FROM (SELECT experiment_id, variant_key, e, sum(sign * m) AS ms,
                       sum((m >> 26) * (m >> 26)) * 4503599627370496 + sum((m >> 26) * (m & 67108863)) * 134217728
                       + sum((m & 67108863) * (m & 67108863)) AS q
                  FROM (SELECT experiment_id, variant_key,
                               CASE WHEN b < 0 THEN -1 ELSE 1 END AS sign,
                               CASE WHEN (b >> 52) & 2047 = 0 THEN b & 4503599627370495
                                    ELSE (b & 4503599627370495) | 4503599627370496 END AS m,
                               CASE WHEN (b >> 52) & 2047 = 0 THEN -1074
                                    ELSE ((b >> 52) & 2047)::integer - 1075 END AS e
                          FROM (SELECT experiment_id, coalesce(variant_id, '') AS variant_key,
                                       ('x' || encode(float8send({_SCORE}), 'hex'))::bit(64)::bigint AS b
                                  FROM {rows} WHERE experiment_id IS NOT NULL AND score IS NOT NULL
                                OFFSET 0) AS bits  -- one conversion a row, not one per use
                        OFFSET 0) AS parts
                 GROUP BY 1, 2, 3) AS by_exponent
         GROUP BY 1, 2) AS s USING (experiment_id, variant_key)
     ORDER BY 1, 2
    ON CONFLICT (experiment_id, variant_key) DO UPDATE SET
        outcomes = t.outcomes + EXCLUDED.outcomes,
        input_tokens = t.input_tokens + EXCLUDED.input_tokens,
        output_tokens = t.output_tokens + EXCLUDED.output_tokens,
        judged = t.judged + EXCLUDED.judged,
        successes = t.successes + EXCLUDED.successes,
        scored = t.scored + EXCLUDED.scored,
        score_sum = t.score_sum + EXCLUDED.score_sum,
        score_sumsq = t.score_sumsq + EXCLUDED.score_sumsq;

    INSERT INTO experiment_latency_bins AS b (experiment_id, variant_key, bin, count)
    SELECT experiment_id, coalesce(variant_id, ''), latency_bin(latency_ms), {sign} * count(*)
      FROM {rows} WHERE experiment_id IS NOT NULL
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (experiment_id, variant_key, bin) DO UPDATE SET count = b.count + EXCLUDED.count;
    """


_FORGET_EMPTY = """
    DELETE FROM experiment_arm_totals AS t USING (SELECT DISTINCT experiment_id, coalesce(variant_id, '') AS k
                                                    FROM old_rows WHERE experiment_id IS NOT NULL) AS a
     WHERE t.experiment_id = a.experiment_id AND t.variant_key = a.k AND t.outcomes = 0;
    DELETE FROM experiment_latency_bins AS b USING (SELECT DISTINCT experiment_id, coalesce(variant_id, '') AS k
                                                      FROM old_rows WHERE experiment_id IS NOT NULL) AS a
     WHERE b.experiment_id = a.experiment_id AND b.variant_key = a.k AND b.count = 0;
"""

COUNT_IN_EXPERIMENTS = f"""
CREATE FUNCTION outcomes_count_in_experiments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM experiment_arm_totals;
    DELETE FROM experiment_latency_bins;
    RETURN NULL;
  END IF;
  -- (An UPDATE subtracts then adds: outcomes are append-only, so none is expected.)
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    {_add("old_rows", "-1")}
    {_FORGET_EMPTY}
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    {_add("new_rows", "1")}
  END IF;
  RETURN NULL;
END
$$
"""

TRIGGERS = (
    "CREATE TRIGGER outcomes_count_inserted AFTER INSERT ON outcomes REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_in_experiments()",
    "CREATE TRIGGER outcomes_count_deleted AFTER DELETE ON outcomes REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_in_experiments()",
    "CREATE TRIGGER outcomes_count_updated AFTER UPDATE ON outcomes"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_in_experiments()",
    "CREATE TRIGGER outcomes_count_truncated AFTER TRUNCATE ON outcomes"
    " FOR EACH STATEMENT EXECUTE FUNCTION outcomes_count_in_experiments()",
)


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "experiment_arm_totals",
        sa.Column("experiment_id", ID, nullable=False),
        sa.Column("variant_key", ID, nullable=False),
        sa.Column("outcomes", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.Numeric(40, 0), nullable=False),
        sa.Column("output_tokens", sa.Numeric(40, 0), nullable=False),
        sa.Column("judged", sa.BigInteger(), nullable=False),
        sa.Column("successes", sa.BigInteger(), nullable=False),
        sa.Column("scored", sa.BigInteger(), nullable=False),
        sa.Column("score_sum", sa.Numeric(), nullable=False),
        sa.Column("score_sumsq", sa.Numeric(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "variant_key", name=op.f("pk_experiment_arm_totals")),
    )
    op.create_table(
        "experiment_latency_bins",
        sa.Column("experiment_id", ID, nullable=False),
        sa.Column("variant_key", ID, nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "variant_key", "bin", name=op.f("pk_experiment_latency_bins")),
    )
    op.execute(LATENCY_BIN)
    op.execute(POWER_OF_TWO)
    op.execute(COUNT_IN_EXPERIMENTS)
    # Outcomes are stored under a share lock on the table meanwhile, so none is counted twice or missed.
    op.execute("LOCK TABLE outcomes IN SHARE MODE")
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.execute(f"DO $$ BEGIN {_add('outcomes', '1')} END $$")
    op.drop_index("ix_outcomes_experiment_id_variant_id", table_name="outcomes")
    op.create_index(
        "ix_outcomes_experiment_id_variant_id_latency_ms",
        "outcomes",
        ["experiment_id", "variant_id", "latency_ms"],
        postgresql_where=sa.text("experiment_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_index(
        "ix_outcomes_experiment_id_variant_id",
        "outcomes",
        ["experiment_id", "variant_id"],
        postgresql_where=sa.text("experiment_id IS NOT NULL"),
    )
    op.drop_index("ix_outcomes_experiment_id_variant_id_latency_ms", table_name="outcomes")
    for trigger in ("inserted", "deleted", "updated", "truncated"):
        op.execute(f"DROP TRIGGER outcomes_count_{trigger} ON outcomes")
    op.execute("DROP FUNCTION outcomes_count_in_experiments()")
    op.execute("DROP FUNCTION exact_power_of_two(integer)")
    op.execute("DROP FUNCTION latency_bin(float8)")
    op.drop_table("experiment_latency_bins")
    op.drop_table("experiment_arm_totals")
