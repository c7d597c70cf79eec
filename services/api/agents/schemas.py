"""Agent request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator

from services.api.schemas import (
    CONFIG_TYPES,
    AgentConfigCreate,
    AgentConfigRead,
    Description,
    Metadata,
    MetadataPatch,
    Name,
    Slug,
    StrictModel,
    derivable_slug,
    timestamp,
)
from services.shared.agent_config import CONFIG_FIELDS


class AgentCreate(StrictModel):
    name: Name
    # Derived from `name` when left out (see Slugs in the contract).
    slug: Slug | None = Field(None, validate_default=True)
    description: Description | None = None
    metadata: Metadata | None = None
    config: AgentConfigCreate

    @field_validator("slug")
    @classmethod
    def _derivable(cls, slug: str | None, info: ValidationInfo) -> str | None:
        return derivable_slug(slug, info, name_field="name")


# Any subset of the twelve; an agent's config fields cannot be null.
AgentConfigPatch = create_model(  # type: ignore[call-overload]
    "AgentConfigPatch",
    __base__=StrictModel,
    __doc__="Any subset of the base config's fields; none may be null.",
    **{name: (CONFIG_TYPES[name], None) for name in CONFIG_FIELDS},
)


class AgentUpdate(StrictModel):
    """A JSON merge patch: fields left out keep their value."""

    # Required on the object, so not nullable in a patch (their default is never used).
    name: Name = None
    slug: Slug = None  # type: ignore[assignment]
    # null resets these to their default ("" and {}).
    description: Description | None = None
    metadata: MetadataPatch | None = None
    config: AgentConfigPatch = None  # type: ignore[assignment]


class AgentRead(BaseModel):
    object: Literal["agent"]
    id: str
    slug: str
    name: str
    description: str
    metadata: dict[str, str]
    config: AgentConfigRead
    active_variant_id: str | None
    variant_count: int
    version: int
    created_at: str
    updated_at: str
    # When it was archived (a DELETE), or null; archived agents are listed only with `?archived=true`.
    archived_at: str | None


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
        config={name: row[name] for name in CONFIG_FIELDS},
        active_variant_id=row["active_variant_id"],
        variant_count=row["variant_count"],
        version=row["version"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        archived_at=timestamp(row["archived_at"]),
    ).model_dump(mode="json")
