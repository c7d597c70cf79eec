"""Bind API keys to environments (contract 1.1, "Environments"): `api_keys.environment_id`,
null for an unbound key.

The foreign key has no cascade: an environment to which a live key is bound is in use
(the service refuses its deletion, `environment_in_use`), and a key must never lose its
binding (an unbound key may do more than a bound one) because its environment went.

The downgrade revokes every bound key before it drops the column: the code before this
migration would read them as unbound, with access to every environment.

Revision ID: d4f6a8c0e2b5
Revises: d4e6f8a0b2c3
Create Date: 2026-12-08 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d4f6a8c0e2b5"
down_revision: str | None = "d4e6f8a0b2c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(40, collation="C")
# Written out (not imported) so this file stays as it is; services.api.db holds the same.
KEYS_CHANNEL = "agent_variants_keys"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column("api_keys", sa.Column("environment_id", ID, nullable=True))
    op.create_foreign_key(
        op.f("fk_api_keys_environment_id_environments"), "api_keys", "environments", ["environment_id"], ["id"]
    )
    # "Is a live key bound to this environment?" (deleting one) and a bound key's own list.
    op.create_index(op.f("ix_api_keys_environment_id"), "api_keys", ["environment_id"])


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # Before the column goes: the old code would take a bound key for an unbound one.
    op.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
        "WHERE environment_id IS NOT NULL AND revoked_at IS NULL"
    )
    # Processes still running drop the keys they hold (at commit), as after any revocation.
    op.execute(f"SELECT pg_notify('{KEYS_CHANNEL}', 'downgrade')")
    op.drop_index(op.f("ix_api_keys_environment_id"), table_name="api_keys")
    op.drop_constraint(op.f("fk_api_keys_environment_id_environments"), "api_keys", type_="foreignkey")
    op.drop_column("api_keys", "environment_id")
