"""Variant request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.api.schemas import (
    EXAMPLE_IDS,
    EXAMPLE_TIMES,
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
from services.shared.agent_config import CONFIG_FIELDS, KEYED_FIELDS

METADATA = "Your own string labels: at most 16 pairs, keys of 1-64 characters, values of up to 512."


class VariantCreate(StrictModel):
    """A new variant: the fields it overrides, the rest inherited from the agent (or a copy)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "variant_name": "Concise",
                    "description": "Shorter answers at a lower temperature.",
                    "overrides": {"temperature": 0.2, "max_tokens": 300},
                }
            ]
        }
    )

    variant_name: Name = Field(description="What people call the variant: 1-256 characters.")
    # Derived from `variant_name` when left out; never `base`.
    slug: Slug | None = Field(
        None,
        validate_default=True,
        description="Lowercase kebab-case, at most 64 characters, unique within the agent; `base` and `live` are "
        "reserved. Omitted: derived from `variant_name` (`-2`, `-3`, ... when taken).",
    )
    description: Description | None = Field(None, description="Free text, up to 4,096 characters; null: empty.")
    metadata: Metadata | None = Field(None, description=METADATA + " Null: none.")
    overrides: ConfigOverrides | None = Field(
        None, description="The config fields this variant sets (applied over `clone_from`'s copy, if any)."
    )
    # "base" (copy the agent's config), a variant's id or slug, or null (start empty).
    clone_from: text(1, 64) | None = Field(  # type: ignore[valid-type]
        None,
        description="`base`: start from a copy of all of the agent's current config (a snapshot); a variant's "
        "id or slug: start from its overrides; null: start with none (everything inherited at resolve time).",
    )

    @field_validator("slug")
    @classmethod
    def _slug(cls, slug: str | None, info: ValidationInfo) -> str | None:
        return derivable_slug(not_reserved(slug), info, name_field="variant_name")


class VariantUpdate(StrictModel):
    """A JSON merge patch: fields left out keep their value; an override set to null is
    removed, so the field is inherited again."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"overrides": {"temperature": 0.3, "max_tokens": None}}]})

    variant_name: Name = Field(None, description="A new name (the slug does not follow it).")
    slug: Slug = Field(None, description="A new slug (kebab-case, unique within the agent, not `base` or `live`).")  # type: ignore[assignment]
    description: Description | None = Field(None, description="A new description; null empties it.")
    metadata: MetadataPatch | None = Field(
        None, description="Merged into the metadata: a key set to null is removed; null removes every pair."
    )
    # null removes every override.
    overrides: ConfigOverrides | None = Field(
        None,
        description="Merged into the overrides: a field set to null is removed (inherited again); fields left out "
        "keep their value. Null removes every override.",
    )

    @field_validator("slug")
    @classmethod
    def _slug(cls, slug: str | None) -> str | None:
        return not_reserved(slug)


class ClonedFrom(BaseModel):
    """What a variant was copied from when it was created."""

    source: Literal["base", "variant"] = Field(description="`base`: the agent's config; `variant`: another variant.")
    variant_id: str | None = Field(description="The variant copied (null when `source` is `base`).")


VARIANT_EXAMPLE: dict[str, Any] = {
    "object": "variant",
    "id": EXAMPLE_IDS["variant"],
    "agent_id": EXAMPLE_IDS["agent"],
    "variant_name": "Concise",
    "slug": "concise",
    "description": "Shorter answers at a lower temperature.",
    "metadata": {},
    "overrides": {"temperature": 0.2, "max_tokens": 300},
    "is_active": True,
    "active_in": ["production", "staging"],
    "cloned_from": None,
    "version": 2,
    "created_at": EXAMPLE_TIMES[0],
    "updated_at": EXAMPLE_TIMES[2],
    "activated_at": EXAMPLE_TIMES[2],
}


class VariantRead(BaseModel):
    """A variant: the config fields it overrides over its agent's base config."""

    model_config = ConfigDict(json_schema_extra={"examples": [VARIANT_EXAMPLE]})

    object: Literal["variant"] = Field(description="Always `variant`.")
    id: str = Field(description="`var_` and a ULID; never changes.")
    agent_id: str = Field(description="The agent it belongs to.")
    variant_name: str = Field(description="What people call the variant.")
    slug: str = Field(description="The variant's name in paths; unique within its agent.")
    description: str = Field(description="Free text; empty when none was given.")
    metadata: dict[str, str] = Field(description=METADATA)
    overrides: ConfigOverridesRead = Field(
        description="Only the fields it sets; every other field is inherited from the agent at resolve time."
    )
    is_active: bool = Field(
        description="Whether it is the agent's active variant in the request's environment (at most one is)."
    )
    active_in: list[str] = Field(
        description="The slugs of the environments it is active in, sorted (a bound key sees its own only)."
    )
    cloned_from: ClonedFrom | None = Field(description="What it was copied from at creation, or null.")
    version: int = Field(
        description="+1 on every change of its own fields; the `ETag` is this in quotes, for `If-Match`."
    )
    created_at: str = Field(description="When it was created (RFC 3339, UTC).")
    updated_at: str = Field(description="When its own fields last changed (RFC 3339, UTC).")
    activated_at: str | None = Field(
        description="When it was activated in the request's environment, or null when it is not active there."
    )


class RestoreRequest(StrictModel):
    """Which revision to restore the variant from."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"revision_id": EXAMPLE_IDS["earlier_revision"]}]})

    revision_id: text(1, 64) = Field(  # type: ignore[valid-type]
        description="A revision of this variant (`rev_...`): its name, description, metadata and overrides are "
        "set as they were right after it."
    )


class DiffChange(BaseModel):
    """One field whose resolved value differs."""

    field: str = Field(
        description="The config field, or one entry of a keyed field: `params.<key>`, `tools.<name>`, "
        "`variables.<name>`."
    )
    # `from` is the `against` side, `to` this variant (resolved values).
    from_: Any = Field(
        alias="from", description="Its resolved value on the `against` side (null: an entry that side lacks)."
    )
    to: Any = Field(description="Its resolved value with this variant (null: an entry it lacks).")


class DiffRead(BaseModel):
    """How this variant's resolved config differs from another's."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "diff",
                    "changes": [
                        {"field": "temperature", "from": 0.7, "to": 0.2},
                        {"field": "max_tokens", "from": 1024, "to": 300},
                    ],
                }
            ]
        }
    )

    object: Literal["diff"] = Field(description="Always `diff`.")
    changes: list[DiffChange] = Field(description="Each field whose resolved values differ, in the config's order.")


# A variant's override columns: the twelve fields' (NULL: inherits) and the keyed ones'
# (empty: sets none).
OVERRIDE_COLUMNS = (*CONFIG_FIELDS, *KEYED_FIELDS, "params_unset")


def overrides_of(row: Mapping[Any, Any]) -> dict[str, Any]:
    """What a variant sets: its non-NULL fields, and its non-empty keyed ones."""
    overrides = {name: row[name] for name in CONFIG_FIELDS if row[name] is not None}
    overrides.update({name: row[name] for name in (*KEYED_FIELDS, "params_unset") if row.get(name)})
    return overrides


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
        is_active=row["activated_at"] is not None,
        active_in=list(row["active_in"]),
        cloned_from=None if source is None else {"source": source, "variant_id": row["cloned_from_variant_id"]},
        version=row["version"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        activated_at=timestamp(row["activated_at"]),
    ).model_dump(mode="json", exclude_unset=True)
