"""Experiment request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from services.api.schemas import Description, Name, StrictModel, text, timestamp
from services.api.slugs import LIVE
from services.shared.agent_config import BASE

MIN_ARMS, MAX_ARMS = 2, 10
Weight = Annotated[int, Field(strict=True, ge=1, le=10_000)]
Salt = text(1, 256)


class ArmIn(StrictModel):
    # "base" (the agent's own config), "live" (the variant active when the experiment
    # starts, or the base config when none is), or a variant's id or slug.
    variant: text(1, 64)  # type: ignore[valid-type]
    weight: Weight


# Each variant at most once: checked once references are looked up (an id and a slug may
# name the same variant), naming the later arm.


class ExperimentCreate(StrictModel):
    name: Name
    description: Description | None = None
    arms: Annotated[list[ArmIn], Field(min_length=MIN_ARMS, max_length=MAX_ARMS)]
    salt: Salt | None = None  # type: ignore[valid-type]


class ExperimentUpdate(StrictModel):
    """A JSON merge patch over name, description, arms (replaced whole) and salt."""

    name: Name = None
    description: Description | None = None
    arms: Annotated[list[ArmIn], Field(min_length=MIN_ARMS, max_length=MAX_ARMS)] = None  # type: ignore[assignment]
    salt: Salt = None  # type: ignore[valid-type]


class ArmRead(BaseModel):
    arm: int
    weight: int
    # What the arm was created with: "base", "live" or a variant id.
    variant: str
    # The variant it serves: null for the base config, and for a `live` arm until the
    # experiment starts (then the variant that was active, or null).
    variant_id: str | None


def arm_read(arm: Mapping[str, Any]) -> dict[str, Any]:
    """An arm as shown: its stored `variant_id` and `weight`, and what it was created with."""
    variant = LIVE if arm.get("live") else (arm["variant_id"] or BASE)
    return {"arm": arm["arm"], "weight": arm["weight"], "variant": variant, "variant_id": arm["variant_id"]}


class ExperimentRead(BaseModel):
    object: Literal["experiment"]
    id: str
    agent_id: str
    slug: str
    name: str
    description: str
    status: Literal["draft", "running", "stopped"]
    salt: str
    arms: list[ArmRead]
    version: int
    created_at: str
    updated_at: str
    started_at: str | None
    stopped_at: str | None


def experiment_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The experiment object of the contract (plus `slug`, derived from the name): an
    `ExperimentRead`, the one shape routes return and OpenAPI shows, as JSON-ready values."""
    return ExperimentRead(
        object="experiment",
        id=row["id"],
        agent_id=row["agent_id"],
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        status=row["status"],
        salt=row["salt"],
        arms=[arm_read(arm) for arm in row["arms"]],
        version=row["version"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        started_at=timestamp(row["started_at"]),
        stopped_at=timestamp(row["stopped_at"]),
    ).model_dump(mode="json")
