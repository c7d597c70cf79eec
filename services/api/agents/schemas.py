"""Agent request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from services.api import keyed_fields as keyed
from services.api.schemas import (
    CONFIG_TYPES,
    EXAMPLE_CONFIG,
    EXAMPLE_IDS,
    EXAMPLE_TIMES,
    AgentConfigCreate,
    AgentConfigRead,
    Description,
    Metadata,
    MetadataPatch,
    Name,
    Slug,
    StrictModel,
    config_description,
    derivable_slug,
    timestamp,
)
from services.shared.agent_config import CONFIG_FIELDS, RESOLVED_FIELDS

METADATA = "Your own string labels: at most 16 pairs, keys of 1-64 characters, values of up to 512."


PARAMS_SCHEMA = (
    "A JSON Schema (draft 2020-12) that every servable resolved `params` must satisfy (base, each variant, rule and "
    "split targets), checked on every write that can change what is served; an invalid schema is 422 "
    "`invalid_schema`."
)


class AgentCreate(StrictModel):
    """A new agent: its name and its base config."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Support bot",
                    "description": "Answers customer questions from the help center.",
                    "metadata": {"team": "support"},
                    "config": {"model_provider": "openai", "model_name": "gpt-4o-mini", "temperature": 0.7},
                }
            ]
        }
    )

    name: Name = Field(description="What people call the agent: 1-256 characters.")
    # Derived from `name` when left out (see Slugs in the contract).
    slug: Slug | None = Field(
        None,
        validate_default=True,
        description="Lowercase kebab-case, at most 64 characters, unique among agents; it names the agent in "
        "paths. Omitted: derived from `name` (`Support bot` gives `support-bot`, or `support-bot-2` when taken).",
    )
    description: Description | None = Field(None, description="Free text, up to 4,096 characters; null: empty.")
    metadata: Metadata | None = Field(None, description=METADATA + " Null: none.")
    config: AgentConfigCreate = Field(
        description="The base config: what the agent runs with when no variant is active."
    )
    params_schema: keyed.JsonObject | None = Field(None, description=PARAMS_SCHEMA + " Null: none.")

    @field_validator("slug")
    @classmethod
    def _derivable(cls, slug: str | None, info: ValidationInfo) -> str | None:
        return derivable_slug(slug, info, name_field="name")


# Any subset of the twelve; an agent's config fields cannot be null.
AgentConfigPatch = create_model(  # type: ignore[call-overload]
    "AgentConfigPatch",
    __base__=StrictModel,
    __doc__="Any subset of the base config's fields; none may be null.",
    **{
        name: (CONFIG_TYPES[name], Field(None, description=config_description(name, "Cannot be null.")))
        for name in CONFIG_FIELDS
    },
    params=(
        keyed.ParamsPatch | None,
        Field(None, description=keyed.PARAMS_DESCRIPTION + " A key set to null removes it; null removes them all."),
    ),
    tools=(
        keyed.ToolsPatch | None,
        Field(None, description=keyed.TOOLS_DESCRIPTION + " A name set to null removes it; null removes them all."),
    ),
    variables=(
        keyed.VariablesPatch | None,
        Field(None, description=keyed.VARIABLES_DESCRIPTION + " A name set to null removes it; null removes them all."),
    ),
)


class AgentUpdate(StrictModel):
    """A JSON merge patch: fields left out keep their value."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"description": "Answers billing questions too.", "config": {"temperature": 0.4}}]
        }
    )

    # Required on the object, so not nullable in a patch (their default is never used).
    name: Name = Field(None, description="A new name (the slug does not follow it).")
    slug: Slug = Field(None, description="A new slug (kebab-case, unique among agents); the old one stops working.")  # type: ignore[assignment]
    # null resets these to their default ("" and {}).
    description: Description | None = Field(None, description="A new description; null empties it.")
    metadata: MetadataPatch | None = Field(
        None, description="Merged into the metadata: a key set to null is removed; null removes every pair."
    )
    config: AgentConfigPatch = Field(None, description="Base config fields to change; those left out keep their value.")  # type: ignore[assignment]
    params_schema: keyed.JsonObject | None = Field(None, description=PARAMS_SCHEMA + " Null removes it.")


AGENT_EXAMPLE: dict[str, Any] = {
    "object": "agent",
    "id": EXAMPLE_IDS["agent"],
    "slug": "support-bot",
    "name": "Support bot",
    "description": "Answers customer questions from the help center.",
    "metadata": {"team": "support"},
    "config": EXAMPLE_CONFIG,
    "params_schema": None,
    "active_variant_id": EXAMPLE_IDS["variant"],
    "active_variants": {"production": EXAMPLE_IDS["variant"], "staging": None},
    "variant_count": 2,
    "version": 3,
    "created_at": EXAMPLE_TIMES[0],
    "updated_at": EXAMPLE_TIMES[1],
    "archived_at": None,
}


class AgentRead(BaseModel):
    """An agent: its base config, and which of its variants is active."""

    model_config = ConfigDict(json_schema_extra={"examples": [AGENT_EXAMPLE]})

    object: Literal["agent"] = Field(description="Always `agent`.")
    id: str = Field(description="`agt_` and a ULID; never changes.")
    slug: str = Field(description="The agent's name in paths (`/v1/agents/support-bot`); unique among agents.")
    name: str = Field(description="What people call the agent.")
    description: str = Field(description="Free text; empty when none was given.")
    metadata: dict[str, str] = Field(description=METADATA)
    config: AgentConfigRead = Field(description="The base config: what resolves where no active variant overrides.")
    params_schema: dict[str, Any] | None = Field(description=PARAMS_SCHEMA + " Null: none.")
    active_variant_id: str | None = Field(
        description="The variant that overrides the base config now in the request's environment, or null."
    )
    active_variants: dict[str, str | None] = Field(
        description="Every environment's slug and the variant active there, or null (a bound key sees its own only)."
    )
    variant_count: int = Field(description="How many variants the agent has.")
    version: int = Field(
        description="+1 on every change of the agent's own fields; the `ETag` is this in quotes, for `If-Match`."
    )
    created_at: str = Field(description="When it was created (RFC 3339, UTC).")
    updated_at: str = Field(description="When its own fields last changed (RFC 3339, UTC).")
    # When it was archived (a DELETE), or null; archived agents are listed only with `?archived=true`.
    archived_at: str | None = Field(
        description="When it was archived (a `DELETE`), or null; archived agents are listed only with `?archived=true`."
    )


def agent_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The agent object of the contract: an `AgentRead`, the one shape routes return and
    OpenAPI shows, as JSON-ready values (revisions store it as it is)."""
    return AgentRead(
        object="agent",
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        metadata=row["metadata"],
        config={name: row[name] for name in RESOLVED_FIELDS},
        params_schema=row["params_schema"],
        active_variant_id=row["active_variant_id"],
        active_variants=dict(sorted((row["active_variants"] or {}).items())),
        variant_count=row["variant_count"],
        version=row["version"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        archived_at=timestamp(row["archived_at"]),
    ).model_dump(mode="json")
