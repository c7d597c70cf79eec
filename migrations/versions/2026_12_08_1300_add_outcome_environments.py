"""Outcomes and usage totals per environment (contract 1.1, "Environments": outcomes and
/usage gain `environment`):
- `outcomes.environment_id`, the environment an outcome was reported in; every outcome
  stored before is production's (v1 behaviour);
- `usage_totals.environment_id`, its primary key becoming (agent_id, environment_id,
  variant_key): /usage reads one environment's rows, or sums every environment's.

Both columns are NOT NULL with a constant server default, production's id. Since
PostgreSQL 11 adding a column with a constant default changes the catalog only (the value
is kept in pg_attribute.attmissingval for the rows already there): no table rewrite, so
the ACCESS EXCLUSIVE lock on `outcomes` lasts a moment however many rows it holds. The
default stays: an older process still running during a deploy copies outcomes without the
column, and they count as production's, as they would have.

No foreign key, as for `variant_id` and `experiment_id`: outcomes are history, kept as
reported; deleting an environment neither erases them nor waits for a check of every row,
and a COPY of 1,000 outcomes checks none.

The downgrade merges each agent's usage totals back into one row per variant (the sum over
environments) before the columns go.

Revision ID: e5a7c9b1d3f6
Revises: d4f6a8c0e2b5
Create Date: 2026-12-08 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5a7c9b1d3f6"
down_revision: str | None = "d4f6a8c0e2b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(40, collation="C")
# Written out (not imported) so this file stays as it is; services.shared.identifiers holds the same.
PRODUCTION_ID = "env_00000000000000000000000000"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # A constant default: catalog only (PostgreSQL 11+), no rewrite of either table.
    op.add_column(
        "outcomes", sa.Column("environment_id", ID, server_default=sa.text(f"'{PRODUCTION_ID}'"), nullable=False)
    )
    op.add_column(
        "usage_totals", sa.Column("environment_id", ID, server_default=sa.text(f"'{PRODUCTION_ID}'"), nullable=False)
    )
    # One row per agent and variant so far, all production's: the new key holds them as they are.
    op.drop_constraint(op.f("pk_usage_totals"), "usage_totals", type_="primary")
    op.create_primary_key(op.f("pk_usage_totals"), "usage_totals", ["agent_id", "environment_id", "variant_key"])


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # No batch adds to the totals while they are merged (the ALTERs below would wait anyway).
    op.execute("LOCK TABLE usage_totals IN ACCESS EXCLUSIVE MODE")
    op.drop_constraint(op.f("pk_usage_totals"), "usage_totals", type_="primary")
    # Every row goes, and one per agent and variant comes back with the sums over environments.
    op.execute(
        "WITH gone AS (DELETE FROM usage_totals RETURNING *)"
        " INSERT INTO usage_totals (agent_id, environment_id, variant_key, outcomes, input_tokens, output_tokens)"
        f" SELECT agent_id, '{PRODUCTION_ID}', variant_key, sum(outcomes), sum(input_tokens), sum(output_tokens)"
        " FROM gone GROUP BY agent_id, variant_key"
    )
    op.drop_column("usage_totals", "environment_id")
    op.create_primary_key(op.f("pk_usage_totals"), "usage_totals", ["agent_id", "variant_key"])
    op.drop_column("outcomes", "environment_id")
