"""Add environments (contract 1.1): the table, and `production`, which every installation has.

`production` gets a fixed id, the same on every installation (the smallest well-formed
environment id, so it sorts before every environment made later). Nothing refers to an
environment yet; the later slices of issue 18 (activations, rules, experiments, bound keys)
add their references in migrations of their own.

Revision ID: b2c4e6a8d0f1
Revises: a7d9f1b3c5e8
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b2c4e6a8d0f1"
down_revision: str | None = "a7d9f1b3c5e8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out (not imported) so this file stays as it is; services.shared.identifiers holds the same.
PRODUCTION_ID = "env_00000000000000000000000000"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    environments = op.create_table(
        "environments",
        sa.Column("id", sa.String(40, collation="C"), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("slug", name=op.f("uq_environments_slug")),
    )
    op.bulk_insert(
        environments,
        [
            {
                "id": PRODUCTION_ID,
                "slug": "production",
                "name": "Production",
                "description": "Served to every request that names no environment; cannot be deleted.",
            }
        ],
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_table("environments")
