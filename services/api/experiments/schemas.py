"""Experiment request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.schemas import EXAMPLE_IDS, EXAMPLE_TIMES, Description, Name, StrictModel, integer, text, timestamp
from services.api.slugs import LIVE
from services.shared.agent_config import BASE

MIN_ARMS, MAX_ARMS = 2, 10
if TYPE_CHECKING:  # what the validator hands on
    Weight = int
else:
    Weight = integer(1, 10_000)
Salt = text(1, 256)


WEIGHT = "Its share of the subjects, relative to the other arms' weights: 1 to 10,000."
SALT = 'Mixed into the hash that assigns subjects to arms (`sha256(f"{salt}:{subject}")`)'


class ArmIn(StrictModel):
    """One arm: the config it serves and its weight."""

    # "base" (the agent's own config), "live" (the variant active when the experiment
    # starts, or the base config when none is), or a variant's id or slug.
    variant: text(1, 64) = Field(  # type: ignore[valid-type]
        description="`base`: the agent's base config; `live`: what is active when the experiment starts (a "
        "variant, or the base config when none is); or a variant's id or slug. Each at most once."
    )
    weight: Weight = Field(description=WEIGHT)


# Each variant at most once: checked once references are looked up (an id and a slug may
# name the same variant), naming the later arm.


class ExperimentCreate(StrictModel):
    """A new experiment, a draft: its arms split the agent's subjects."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Concise vs base",
                    "description": "Do shorter answers resolve as many questions?",
                    "arms": [{"variant": "base", "weight": 1}, {"variant": "concise", "weight": 1}],
                }
            ]
        }
    )

    name: Name = Field(description="What people call the experiment: 1-256 characters.")
    description: Description | None = Field(None, description="Free text, up to 4,096 characters; null: empty.")
    arms: Annotated[list[ArmIn], Field(min_length=MIN_ARMS, max_length=MAX_ARMS)] = Field(
        description="2 to 10 arms, numbered from 0 in this order; the first is the control."
    )
    salt: Salt | None = Field(None, description=SALT + "; omitted or null: the experiment's id.")  # type: ignore[valid-type]
    environment: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="The environment it runs in, by slug or id; omitted: the request's (`?environment=`, the "
        "key's, else `production`). Naming another than `?environment=` is 422.",
    )


class ExperimentUpdate(StrictModel):
    """A JSON merge patch over name, description, arms (replaced whole) and salt."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"arms": [{"variant": "base", "weight": 3}, {"variant": "concise", "weight": 1}]}]
        }
    )

    name: Name = Field(None, description="A new name.")
    description: Description | None = Field(None, description="A new description; null empties it.")
    arms: Annotated[
        list[ArmIn],
        Field(
            min_length=MIN_ARMS,
            max_length=MAX_ARMS,
            description="Every arm, replacing the old ones; only while a draft (else 409 `experiment_not_draft`).",
        ),
    ] = None  # type: ignore[assignment]
    salt: Salt = Field(None, description=SALT + "; only while a draft.")  # type: ignore[valid-type]


class ArmRead(BaseModel):
    """One arm of an experiment."""

    arm: int = Field(description="Its number, from 0 (the control) in the order the arms were given.")
    weight: int = Field(description=WEIGHT)
    # What the arm was created with: "base", "live" or a variant id.
    variant: str = Field(description="What it was created with: `base`, `live` or a variant's id.")
    # The variant it serves: null for the base config, and for a `live` arm until the
    # experiment starts (then the variant that was active, or null).
    variant_id: str | None = Field(
        description="The variant it serves: null for the base config, and for a `live` arm until the experiment "
        "starts (then the variant that was active, or null)."
    )


def arm_read(arm: Mapping[str, Any]) -> dict[str, Any]:
    """An arm as shown: its stored `variant_id` and `weight`, and what it was created with."""
    variant = LIVE if arm.get("live") else (arm["variant_id"] or BASE)
    return {"arm": arm["arm"], "weight": arm["weight"], "variant": variant, "variant_id": arm["variant_id"]}


EXPERIMENT_EXAMPLE: dict[str, Any] = {
    "object": "experiment",
    "id": EXAMPLE_IDS["experiment"],
    "agent_id": EXAMPLE_IDS["agent"],
    "environment": "production",
    "slug": "concise-vs-base",
    "name": "Concise vs base",
    "description": "Do shorter answers resolve as many questions?",
    "status": "running",
    "salt": EXAMPLE_IDS["experiment"],
    "arms": [
        {"arm": 0, "weight": 1, "variant": "base", "variant_id": None},
        {"arm": 1, "weight": 1, "variant": EXAMPLE_IDS["variant"], "variant_id": EXAMPLE_IDS["variant"]},
    ],
    "version": 2,
    "created_at": EXAMPLE_TIMES[1],
    "updated_at": EXAMPLE_TIMES[2],
    "started_at": EXAMPLE_TIMES[2],
    "stopped_at": None,
}


class ExperimentRead(BaseModel):
    """An A/B test: subjects are split between arms, each serving a config."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXPERIMENT_EXAMPLE]})

    object: Literal["experiment"] = Field(description="Always `experiment`.")
    id: str = Field(description="`exp_` and a ULID; never changes.")
    agent_id: str = Field(description="The agent it belongs to.")
    environment: str = Field(description="The slug of the environment it runs in.")
    slug: str = Field(description="Derived from the name; unique within the agent.")
    name: str = Field(description="What people call the experiment.")
    description: str = Field(description="Free text; empty when none was given.")
    status: Literal["draft", "running", "stopped"] = Field(
        description="`draft` (arms and salt may change), `running` (it splits subjects; at most one per agent and "
        "environment) or `stopped` (final)."
    )
    salt: str = Field(description=SALT + ".")
    arms: list[ArmRead] = Field(description="Its arms, in order; the first is the control.")
    version: int = Field(
        description="+1 on every change of its own fields; the `ETag` is this in quotes, for `If-Match`."
    )
    created_at: str = Field(description="When it was created (RFC 3339, UTC).")
    updated_at: str = Field(description="When its own fields last changed (RFC 3339, UTC).")
    started_at: str | None = Field(description="When it started, or null.")
    stopped_at: str | None = Field(description="When it stopped, or null.")


def experiment_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The experiment object of the contract (plus `slug`, derived from the name): an
    `ExperimentRead`, the one shape routes return and OpenAPI shows, as JSON-ready values."""
    return ExperimentRead(
        object="experiment",
        id=row["id"],
        agent_id=row["agent_id"],
        environment=row["environment"],
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
