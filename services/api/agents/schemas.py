"""Agent request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, create_model

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
)
from services.shared.agent_config import CONFIG_FIELDS


class AgentCreate(StrictModel):
    name: Name
    slug: Slug | None = None
    description: Description | None = None
    metadata: Metadata | None = None
    config: AgentConfigCreate  # type: ignore[valid-type]


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
