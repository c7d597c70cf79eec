"""Environment request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from services.api.schemas import (
    EXAMPLE_IDS,
    EXAMPLE_TIMES,
    Description,
    Name,
    Slug,
    StrictModel,
    derivable_slug,
    timestamp,
)


class EnvironmentCreate(StrictModel):
    """A new environment: its name and, optionally, its slug and description."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Staging", "description": "What we try before production."}]}
    )

    name: Name = Field(description="What people call the environment: 1-256 characters.")
    # Derived from `name` when left out (see Slugs in the contract).
    slug: Slug | None = Field(
        None,
        validate_default=True,
        description="Lowercase kebab-case, at most 64 characters, unique among environments; it names the "
        "environment in paths and in `?environment=`, and never changes. Omitted: derived from `name` "
        "(`Staging` gives `staging`, or `staging-2` when taken).",
    )
    description: Description | None = Field(None, description="Free text, up to 4,096 characters; null: empty.")

    @field_validator("slug")
    @classmethod
    def _derivable(cls, slug: str | None, info: ValidationInfo) -> str | None:
        return derivable_slug(slug, info, name_field="name")


def _slug_never_changes(value: Any) -> Any:
    raise PydanticCustomError("slug_immutable", "an environment's slug never changes (it is not part of a patch)")


class EnvironmentUpdate(StrictModel):
    """A JSON merge patch over `name` and `description`: fields left out keep their value."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Staging (EU)"}]})

    # Required on the object, so not nullable in a patch (its default is never used).
    name: Name = Field(None, description="A new name (the slug does not follow it).")
    # null resets it to its default ("").
    description: Description | None = Field(None, description="A new description; null empties it.")
    # Not in the document (a patch takes no `slug`, as `additionalProperties: false` says);
    # declared only so that sending one is a 422 that says why, rather than "Unknown field".
    slug: SkipJsonSchema[Annotated[Any, Field(exclude=True)]] = None

    @field_validator("slug", mode="before")
    @classmethod
    def _no_slug(cls, value: Any) -> Any:
        return _slug_never_changes(value)


ENVIRONMENT_EXAMPLE: dict[str, Any] = {
    "object": "environment",
    "id": EXAMPLE_IDS["environment"],
    "slug": "staging",
    "name": "Staging",
    "description": "What we try before production.",
    "version": 2,
    "created_at": EXAMPLE_TIMES[0],
    "updated_at": EXAMPLE_TIMES[1],
}


class EnvironmentRead(BaseModel):
    """An environment: where a config is served (`production`, `staging`, ...)."""

    model_config = ConfigDict(json_schema_extra={"examples": [ENVIRONMENT_EXAMPLE]})

    object: Literal["environment"] = Field(description="Always `environment`.")
    id: str = Field(description="`env_` and a ULID; never changes. `production`'s is the same on every installation.")
    slug: str = Field(
        description="Its name in paths and in `?environment=` (`staging`); unique among environments; never changes."
    )
    name: str = Field(description="What people call the environment.")
    description: str = Field(description="Free text; empty when none was given.")
    version: int = Field(
        description="+1 on every change of its name or description; the `ETag` is this in quotes, for `If-Match`."
    )
    created_at: str = Field(description="When it was created (RFC 3339, UTC).")
    updated_at: str = Field(description="When its name or description last changed (RFC 3339, UTC).")


def environment_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The environment object of the contract: an `EnvironmentRead`, the one shape the routes
    return and OpenAPI shows, as JSON-ready values."""
    return EnvironmentRead(
        object="environment",
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        version=row["version"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    ).model_dump(mode="json")
