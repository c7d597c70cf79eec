"""Agent request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator

from services.api.schemas import (
    CONFIG_TYPES,
    AgentConfig,
    AgentConfigCreate,
    Description,
    Metadata,
    MetadataPatch,
    Name,
    Slug,
    StrictModel,
    derivable_slug,
)
from services.shared.agent_config import CONFIG_FIELDS


class AgentCreate(StrictModel):
    name: Name
    # Derived from `name` when left out (see Slugs in the contract).
    slug: Slug | None = Field(None, validate_default=True)
    description: Description | None = None
    metadata: Metadata | None = None
    config: AgentConfigCreate  # type: ignore[valid-type]

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
    name: Name = None  # type: ignore[assignment]
    slug: Slug = None  # type: ignore[assignment]
    # null resets these to their default ("" and {}).
    description: Description | None = None
    metadata: MetadataPatch | None = None
    config: AgentConfigPatch = None  # type: ignore[valid-type,assignment]


class AgentRead(BaseModel):
    object: Literal["agent"]
    id: str
    slug: str
    name: str
    description: str
    metadata: dict[str, str]
    config: AgentConfig  # type: ignore[valid-type]
    active_variant_id: str | None
    variant_count: int
    version: int
    created_at: str
    updated_at: str
