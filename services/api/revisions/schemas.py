"""The revision object of the contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.schemas import EXAMPLE_IDS, EXAMPLE_TIMES, timestamp

# An activation: the variant's object before and after (abridged here to what changed).
REVISION_EXAMPLE: dict[str, Any] = {
    "object": "revision",
    "id": EXAMPLE_IDS["revision"],
    "agent_id": EXAMPLE_IDS["agent"],
    "target": "variant",
    "target_id": EXAMPLE_IDS["variant"],
    "action": "activate",
    "actor": "jane@acme.example",
    "api_key": "console-admin",
    "environment": "production",
    "active_variant_id": EXAMPLE_IDS["variant"],
    "active_variants": {"production": EXAMPLE_IDS["variant"], "staging": None},
    "before": {"object": "variant", "id": EXAMPLE_IDS["variant"], "is_active": False, "version": 1},
    "after": {"object": "variant", "id": EXAMPLE_IDS["variant"], "is_active": True, "version": 2},
    "created_at": EXAMPLE_TIMES[2],
}


class RevisionRead(BaseModel):
    """One change to an agent, one of its variants or experiments, written with the change."""

    model_config = ConfigDict(json_schema_extra={"examples": [REVISION_EXAMPLE]})

    object: Literal["revision"] = Field(description="Always `revision`.")
    id: str = Field(description="`rev_` and a ULID: revisions are ordered as their changes committed.")
    agent_id: str = Field(description="The agent the change belongs to.")
    target: Literal["agent", "variant", "experiment", "rule_set"] = Field(
        description="What was changed; `rule_set`: an agent's targeting rules in one environment (its id is "
        "the environment's)."
    )
    target_id: str = Field(description="Its id.")
    action: str = Field(
        description="`create`, `update`, `delete`, `activate`, `deactivate`, `start`, `stop`, `restore`, `undo`, "
        "`archive`, `unarchive` or `rules` (a rule set replaced)."
    )
    actor: str | None = Field(
        description="Who made the change: the `X-Actor` header when given, else the API key's name, else null."
    )
    api_key: str | None = Field(description="The name of the API key that made the change (null when auth is off).")
    environment: str | None = Field(
        description="The slug of the environment the change was made in; null for a change to shared definitions "
        "(the agent's base config, its variants)."
    )
    active_variant_id: str | None = Field(
        description="The agent's active variant right after the change in the request's environment, or null."
    )
    active_variants: dict[str, str | None] = Field(
        description="Every environment's slug and the variant active there right after the change, or null "
        "(a bound key sees its own only)."
    )
    before: dict[str, Any] | None = Field(description="The whole object before the change; null for a create.")
    after: dict[str, Any] | None = Field(description="The whole object after the change; null for a delete.")
    created_at: str = Field(description="When the change committed (RFC 3339, UTC).")


def revision_read(row: Mapping[Any, Any], *, seen_from: str | None = None, only: str | None = None) -> dict[str, Any]:
    """The revision object of the contract: a `RevisionRead`, the one shape routes return
    and OpenAPI shows, as JSON-ready values (`before` and `after` as they were stored).
    `seen_from` is the slug of the request's environment (`active_variant_id` is the
    variant active there; without it, the one active where the change was made); `only`,
    a bound key's environment slug, leaves the other environments out of `active_variants`."""
    every = dict(sorted((row["active_variants_by_slug"] or {}).items()))
    active = every.get(seen_from) if seen_from is not None else row["active_variant_id"]
    if only is not None:
        every = {only: every.get(only)}
    return RevisionRead(
        object="revision",
        id=row["id"],
        agent_id=row["agent_id"],
        target=row["target"],
        target_id=row["target_id"],
        action=row["action"],
        actor=row["actor"],
        api_key=row["api_key"],
        environment=row["environment"],
        active_variant_id=active,
        active_variants=every,
        before=row["before"],
        after=row["after"],
        created_at=timestamp(row["created_at"]),
    ).model_dump(mode="json")
