"""Variant request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from services.api.schemas import (
    ConfigOverrides,
    Description,
    Metadata,
    MetadataPatch,
    Name,
    Slug,
    StrictModel,
    text,
)


class VariantCreate(StrictModel):
    variant_name: Name
    slug: Slug | None = None
    description: Description | None = None
    metadata: Metadata | None = None
    overrides: ConfigOverrides | None = None  # type: ignore[valid-type]
    # "base" (copy the agent's config), a variant's id or slug, or null (start empty).
    clone_from: text(1, 64) | None = None  # type: ignore[valid-type]


class VariantUpdate(StrictModel):
    """A JSON merge patch: fields left out keep their value; an override set to null is
    removed, so the field is inherited again."""

    variant_name: Name = None  # type: ignore[assignment]
    slug: Slug = None  # type: ignore[assignment]
    description: Description | None = None
    metadata: MetadataPatch | None = None
    # null removes every override.
    overrides: ConfigOverrides | None = None  # type: ignore[valid-type]


class ClonedFrom(BaseModel):
    source: Literal["base", "variant"]
    variant_id: str | None


class VariantRead(BaseModel):
    object: Literal["variant"]
    id: str
    agent_id: str
    variant_name: str
    slug: str
    description: str
    metadata: dict[str, str]
    overrides: ConfigOverrides  # type: ignore[valid-type]  # only the fields it sets
    is_active: bool
    cloned_from: ClonedFrom | None
    version: int
    created_at: str
    updated_at: str
    activated_at: str | None
