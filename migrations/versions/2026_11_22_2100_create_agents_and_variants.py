"""Create agents and variants, with the single-active partial unique index.

Revision ID: 3c1f9a2b7d10
Revises:
Create Date: 2026-11-22 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3c1f9a2b7d10"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the bounds as they were when this migration was written: a later
# change to the Python constants must come with a migration of its own.
STRING_FIELDS = {
    "model_provider": (1, 64),
    "model_name": (1, 256),
    "system_prompt": (0, 200_000),
    "user_prompt_template": (0, 200_000),
    "prompt_version": (0, 64),
}
NUMBER_FIELDS = {
    "temperature": ("0.0", "2.0"),
    "max_tokens": (1, 10_000_000),
    "context_window": (0, 100_000_000),
    "input_token_limit": (0, 100_000_000),
    "token_budget": (0, 10_000_000_000),
    "timeout_seconds": (1, 86_400),
    "max_retries": (0, 100),
}


def _config_columns(nullable: bool) -> list[sa.Column]:
    columns = [sa.Column(name, sa.Text(), nullable=nullable) for name in STRING_FIELDS]
    columns.append(sa.Column("temperature", sa.Double(), nullable=nullable))
    for name in ("max_tokens", "context_window", "input_token_limit"):
        columns.append(sa.Column(name, sa.Integer(), nullable=nullable))
    columns.append(sa.Column("token_budget", sa.BigInteger(), nullable=nullable))
    for name in ("timeout_seconds", "max_retries"):
        columns.append(sa.Column(name, sa.Integer(), nullable=nullable))
    return columns


def _config_checks(table: str) -> list[sa.CheckConstraint]:
    # op.f(): the names are final. Without it the models' naming convention (which env.py
    # hands to Alembic) would prefix them again: ck_agents_ck_agents_..._range.
    checks = [
        sa.CheckConstraint(f"char_length({name}) BETWEEN {low} AND {high}", name=op.f(f"ck_{table}_{name}_length"))
        for name, (low, high) in STRING_FIELDS.items()
    ]
    checks += [
        sa.CheckConstraint(f"{name} BETWEEN {low} AND {high}", name=op.f(f"ck_{table}_{name}_range"))
        for name, (low, high) in NUMBER_FIELDS.items()
    ]
    return checks


def _id() -> sa.String:
    return sa.String(40, collation="C")


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "agents",
        sa.Column("id", _id(), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        *_config_columns(nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
        sa.UniqueConstraint("slug", name="uq_agents_slug"),
        *_config_checks("agents"),
    )
    op.create_table(
        "variants",
        sa.Column("id", _id(), nullable=False),
        sa.Column("agent_id", _id(), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("variant_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        *_config_columns(nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("cloned_from_source", sa.String(16), nullable=True),
        sa.Column("cloned_from_variant_id", _id(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_variants"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_variants_agent_id_agents", ondelete="CASCADE"),
        sa.UniqueConstraint("agent_id", "slug", name="uq_variants_agent_id_slug"),
        sa.CheckConstraint(
            "cloned_from_source IS NULL OR cloned_from_source IN ('base', 'variant')",
            name=op.f("ck_variants_cloned_from_source"),
        ),
        *_config_checks("variants"),
    )
    op.create_index("ix_variants_agent_id_id", "variants", ["agent_id", "id"])
    # At most one active variant per agent, whatever the concurrency.
    op.create_index(
        "uq_variants_one_active_per_agent",
        "variants",
        ["agent_id"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_table("variants")
    op.drop_table("agents")
