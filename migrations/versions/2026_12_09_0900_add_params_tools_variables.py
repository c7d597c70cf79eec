"""The config an agent really runs with (contract 1.1): `params`, `tools` and `variables`
on agents and variants, `params_unset` on variants, `params_schema` on agents; and the
variables that existing templates already use, declared.

Every new column but `params_schema` is NOT NULL with a constant default (`{}`, `[]`):
catalog only since PostgreSQL 11, no table rewrite. Each is checked to be a JSON object
(`params_unset` an array).

Templates written before this revision may hold `{{name}}` placeholders that no variable
declares, which the service now refuses on every write that can change what is served.
So each agent declares, as a required string, every placeholder its base templates and its
variants' templates use (the contract's inference on create, applied once to what exists).
A template whose placeholders do not parse is left as it is: its next write reports it.

The downgrade drops the columns (and with them the declared variables).

Revision ID: f6a8c0e2b4d7
Revises: e5a7c9b1d3f6
Create Date: 2026-12-09 09:00:00
"""

import json
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "f6a8c0e2b4d7"
down_revision: str | None = "e5a7c9b1d3f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYED = ("params", "tools", "variables")
TEMPLATES = ("system_prompt", "user_prompt_template")

# The contract's placeholder syntax, written out (not imported) so this file stays as it
# is: `{{`, optional spaces, an identifier, optional spaces, `}}`. Scanning as
# `agent_variants.templates.placeholders` does: each `{{` opens a placeholder that ends at
# the first `}}` after it; one that is not a valid placeholder makes the template invalid.
_PLACEHOLDER = re.compile(r" *([A-Za-z_][A-Za-z0-9_]{0,63}) *")


def _placeholders(template: str) -> list[str] | None:
    """The names a template's placeholders use in order, or None when one is invalid."""
    names: list[str] = []
    position = 0
    while True:
        start = template.find("{{", position)
        if start < 0:
            return names
        end = template.find("}}", start + 2)
        if end < 0:
            return names  # a `{{` with no `}}` after it is text
        match = _PLACEHOLDER.fullmatch(template, start + 2, end)
        if match is None:
            return None
        names.append(match.group(1))
        position = end + 2


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for table in ("agents", "variants"):
        for name in KEYED:
            op.add_column(table, sa.Column(name, JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False))
            op.create_check_constraint(op.f(f"ck_{table}_{name}_object"), table, f"jsonb_typeof({name}) = 'object'")
    op.add_column("variants", sa.Column("params_unset", JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False))
    op.create_check_constraint(
        op.f("ck_variants_params_unset_array"), "variants", "jsonb_typeof(params_unset) = 'array'"
    )
    op.add_column("agents", sa.Column("params_schema", JSONB, nullable=True))

    bind = op.get_bind()
    declared: dict[str, dict[str, dict[str, str]]] = {}
    rows = bind.execute(
        sa.text(
            "SELECT id AS agent_id, system_prompt, user_prompt_template FROM agents"
            " UNION ALL SELECT agent_id, system_prompt, user_prompt_template FROM variants"
        )
    )
    for agent_id, *templates in rows:
        for template in templates:
            for name in _placeholders(template or "") or ():
                declared.setdefault(agent_id, {})[name] = {"type": "string"}
    update = sa.text("UPDATE agents SET variables = CAST(:variables AS jsonb) WHERE id = :id")
    for agent_id, variables in declared.items():
        bind.execute(update, {"id": agent_id, "variables": json.dumps(variables)})


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("agents", "params_schema")
    op.drop_constraint(op.f("ck_variants_params_unset_array"), "variants", type_="check")
    op.drop_column("variants", "params_unset")
    for table in ("agents", "variants"):
        for name in KEYED:
            op.drop_constraint(op.f(f"ck_{table}_{name}_object"), table, type_="check")
            op.drop_column(table, name)
