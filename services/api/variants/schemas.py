"""Variant request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from services.api.schemas import (
    ConfigOverrides,
    ConfigOverridesRead,
    Description,
    Metadata,
    MetadataPatch,
    Name,
    Slug,
    StrictModel,
    derivable_slug,
    not_reserved,
    text,
)


class VariantCreate(StrictModel):
    variant_name: Name
    # Derived from `variant_name` when left out; never `base`.
    slug: Slug | None = Field(None, validate_default=True)
    description: Description | None = None
    metadata: Metadata | None = None
    overrides: ConfigOverrides | None = None  # type: ignore[valid-type]
    # "base" (copy the agent's config), a variant's id or slug, or null (start empty).
    clone_from: text(1, 64) | None = None  # type: ignore[valid-type]

    @field_validator("slug")
    @classmethod
    def _slug(cls, slug: str | None, info: ValidationInfo) -> str | None:
        return derivable_slug(not_reserved(slug), info, name_field="variant_name")


class VariantUpdate(StrictModel):
    """A JSON merge patch: fields left out keep their value; an override set to null is
    removed, so the field is inherited again."""

    variant_name: Name = None  # type: ignore[assignment]
    slug: Slug = None  # type: ignore[assignment]
    description: Description | None = None
    metadata: MetadataPatch | None = None
    # null removes every override.
    overrides: ConfigOverrides | None = None  # type: ignore[valid-type]

    @field_validator("slug")
    @classmethod
    def _slug(cls, slug: str | None) -> str | None:
        return not_reserved(slug)


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
    overrides: ConfigOverridesRead  # type: ignore[valid-type]
    is_active: bool
    cloned_from: ClonedFrom | None
    version: int
    created_at: str
    updated_at: str
    activated_at: str | None


class RestoreRequest(StrictModel):
    revision_id: text(1, 64)  # type: ignore[valid-type]


class DiffChange(BaseModel):
    field: str
    # `from` is the `against` side, `to` this variant (resolved values).
    from_: str | int | float = Field(alias="from")
    to: str | int | float


class DiffRead(BaseModel):
    object: Literal["diff"]
    changes: list[DiffChange]
