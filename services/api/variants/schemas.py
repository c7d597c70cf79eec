"""Variant request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

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
    timestamp,
)
from services.shared.agent_config import CONFIG_FIELDS


class VariantCreate(StrictModel):
    variant_name: Name
    # Derived from `variant_name` when left out; never `base`.
    slug: Slug | None = Field(None, validate_default=True)
    description: Description | None = None
    metadata: Metadata | None = None
    overrides: ConfigOverrides | None = None
    # "base" (copy the agent's config), a variant's id or slug, or null (start empty).
    clone_from: text(1, 64) | None = None  # type: ignore[valid-type]

    @field_validator("slug")
    @classmethod
    def _slug(cls, slug: str | None, info: ValidationInfo) -> str | None:
        return derivable_slug(not_reserved(slug), info, name_field="variant_name")


class VariantUpdate(StrictModel):
    """A JSON merge patch: fields left out keep their value; an override set to null is
    removed, so the field is inherited again."""

    variant_name: Name = None
    slug: Slug = None  # type: ignore[assignment]
    description: Description | None = None
    metadata: MetadataPatch | None = None
    # null removes every override.
    overrides: ConfigOverrides | None = None

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
    overrides: ConfigOverridesRead
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


def overrides_of(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The fields a variant sets (its non-NULL columns)."""
    return {name: row[name] for name in CONFIG_FIELDS if row[name] is not None}


def variant_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The variant object of the contract: a `VariantRead`, the one shape routes return and
    OpenAPI shows, as JSON-ready values. `overrides` holds only the fields it sets."""
    source = row["cloned_from_source"]
    return VariantRead(
        object="variant",
        id=row["id"],
        agent_id=row["agent_id"],
        variant_name=row["variant_name"],
        slug=row["slug"],
        description=row["description"],
        metadata=row["metadata"],
        overrides=overrides_of(row),
        is_active=row["is_active"],
        cloned_from=None if source is None else {"source": source, "variant_id": row["cloned_from_variant_id"]},
        version=row["version"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        activated_at=timestamp(row["activated_at"]),
    ).model_dump(mode="json", exclude_unset=True)
