"""Experiment request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from services.api.errors import SEVERAL_FIELDS
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


def step_errors(steps: list[StepIn]) -> list[tuple[str, str]]:
    """A rollout's steps rise strictly and end at 100."""
    errors = [
        (f"steps[{index}].percent", f"must be above the step before ({steps[index - 1].percent})")
        for index in range(1, len(steps))
        if steps[index].percent <= steps[index - 1].percent
    ]
    if steps and steps[-1].percent != 100:
        errors.append((f"steps[{len(steps) - 1}].percent", "the last step is 100"))
    return errors


# Each variant at most once: checked once references are looked up (an id and a slug may
# name the same variant), naming the later arm.


METRICS = ("success_rate", "score_mean", "latency_ms_mean", "cost_usd_mean", "output_tokens_mean")
MAX_STEPS, MAX_GUARDRAILS = 20, len(METRICS)
HOLD_MAX = 2_592_000  # 30 days
if TYPE_CHECKING:
    Percent = int
    Hold = int
    MinOutcomes = int
else:
    Percent = integer(1, 100)
    Hold = integer(0, HOLD_MAX)
    MinOutcomes = integer(1, 1_000_000)


class StepIn(StrictModel):
    """One step of a rollout: the share of subjects the variant gets, and for how long at least."""

    percent: Percent = Field(
        description="The variant's share of the subjects, 1-100; steps rise strictly, the last is 100."
    )
    hold_seconds: Hold = Field(
        description="How long the step lasts at least, 0 to 2,592,000 (30 days); it ends once every guardrail also "
        "has `min_outcomes` outcomes in each arm and none is breached."
    )


class GuardrailIn(StrictModel):
    """A metric the variant may not make worse by more than `max_degradation`."""

    metric: Literal["success_rate", "score_mean", "latency_ms_mean", "cost_usd_mean", "output_tokens_mean"] = Field(
        description="Higher is better for `success_rate` and `score_mean`, lower for the rest."
    )
    max_degradation: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] = Field(
        description="How much worse the variant may be, in the metric's units (0.02 = two points of success rate, "
        "250 = 250 ms of mean latency)."
    )


class ExperimentCreate(StrictModel):
    """A new experiment or rollout, a draft. An experiment's `arms` split the agent's
    subjects; a rollout ships one `variant` step by step (`steps`), guarded by outcomes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Concise vs base",
                    "description": "Do shorter answers resolve as many questions?",
                    "arms": [{"variant": "base", "weight": 1}, {"variant": "concise", "weight": 1}],
                }
            ],
            # What `_kind` checks, stated in the schema too, so clients and generators see it:
            # a rollout needs `variant` and `steps` and takes no `arms`; an experiment (the
            # default kind) needs `arms` and takes none of the rollout's fields (null is absent).
            "allOf": [
                {
                    "if": {"properties": {"kind": {"const": "rollout"}}, "required": ["kind"]},
                    "then": {
                        "required": ["variant", "steps"],
                        "properties": {
                            "arms": {"type": "null"},
                            "variant": {"not": {"type": "null"}},
                            "steps": {"not": {"type": "null"}},
                        },
                    },
                    "else": {
                        "required": ["arms"],
                        "properties": {
                            "arms": {"not": {"type": "null"}},
                            **{name: {"type": "null"} for name in ("variant", "steps", "guardrails", "min_outcomes")},
                        },
                    },
                }
            ],
        }
    )

    kind: Literal["experiment", "rollout"] = Field(
        "experiment", description="`experiment` (weighted `arms`) or `rollout` (one `variant`, step by step)."
    )
    name: Name = Field(description="What people call the experiment: 1-256 characters.")
    description: Description | None = Field(None, description="Free text, up to 4,096 characters; null: empty.")
    arms: Annotated[list[ArmIn], Field(min_length=MIN_ARMS, max_length=MAX_ARMS)] | None = Field(
        None, description="An experiment's 2 to 10 arms, numbered from 0 in this order; the first is the control."
    )
    variant: text(1, 64) | None = Field(  # type: ignore[valid-type]
        None,
        description="A rollout's variant (id or slug). Arm 0 serves what the environment serves at the start "
        "(`live`), arm 1 this variant; both are snapshotted then.",
    )
    steps: Annotated[list[StepIn], Field(min_length=1, max_length=MAX_STEPS)] | None = Field(
        None, description="A rollout's steps, 1 to 20: percents rising strictly, the last 100."
    )
    guardrails: Annotated[list[GuardrailIn], Field(max_length=MAX_GUARDRAILS)] | None = Field(
        None, description="A rollout's guardrails, each metric at most once; none: it advances on time alone."
    )
    min_outcomes: MinOutcomes | None = Field(
        None,
        description="A rollout's outcomes per arm that each guardrail needs before it can pass or be breached: 1 to "
        "1,000,000; default 100.",
    )
    salt: Salt | None = Field(None, description=SALT + "; omitted or null: the experiment's id.")  # type: ignore[valid-type]
    environment: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="The environment it runs in, by slug or id; omitted: the request's (`?environment=`, the "
        "key's, else `production`). Naming another than `?environment=` is 422.",
    )

    @model_validator(mode="after")
    def _kind(self) -> ExperimentCreate:
        """An experiment takes `arms`, a rollout `variant` and `steps`: every field of the
        other kind, and each missing one, is named."""
        errors: list[tuple[str, str]] = []
        rollout_only = ("variant", "steps", "guardrails", "min_outcomes")
        if self.kind == "experiment":
            if self.arms is None:
                errors.append(("arms", "required for an experiment"))
            errors += [(name, "only for a rollout") for name in rollout_only if getattr(self, name) is not None]
        else:
            if self.arms is not None:
                errors.append(("arms", "a rollout's arms are derived: live, then its variant"))
            errors += [(name, "required for a rollout") for name in ("variant", "steps") if getattr(self, name) is None]
            errors += step_errors(self.steps or [])
            metrics = [guardrail.metric for guardrail in self.guardrails or []]
            errors += [
                (f"guardrails[{index}].metric", "each metric at most once")
                for index, metric in enumerate(metrics)
                if metric in metrics[:index]
            ]
        if errors:
            raise PydanticCustomError(
                SEVERAL_FIELDS, "; ".join(f"{param}: {message}" for param, message in errors), {"errors": errors}
            )
        return self


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
    steps: Annotated[
        list[StepIn],
        Field(
            min_length=1,
            max_length=MAX_STEPS,
            description="A rollout's steps, replacing the old ones; only while a draft.",
        ),
    ] = None  # type: ignore[assignment]
    guardrails: Annotated[
        list[GuardrailIn],
        Field(
            max_length=MAX_GUARDRAILS, description="A rollout's guardrails, replacing the old ones; only while a draft."
        ),
    ] = None  # type: ignore[assignment]
    min_outcomes: MinOutcomes = Field(None, description="A rollout's min_outcomes; only while a draft.")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _rollout_fields(self) -> ExperimentUpdate:
        errors = step_errors(self.steps or [])
        metrics = [guardrail.metric for guardrail in self.guardrails or []]
        errors += [
            (f"guardrails[{index}].metric", "each metric at most once")
            for index, metric in enumerate(metrics)
            if metric in metrics[:index]
        ]
        if errors:
            raise PydanticCustomError(
                SEVERAL_FIELDS, "; ".join(f"{param}: {message}" for param, message in errors), {"errors": errors}
            )
        return self


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
    "kind": "experiment",
    "status_reason": None,
    "steps": None,
    "guardrails": None,
    "min_outcomes": None,
    "progress": None,
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
    kind: Literal["experiment", "rollout"] = Field(
        description="`experiment` (weighted arms) or `rollout` (one variant, step by step)."
    )
    status: Literal["draft", "running", "paused", "stopped", "completed", "rolled_back"] = Field(
        description="`draft` (arms and salt may change), `running` (it splits subjects; at most one split runs or is "
        "paused per agent and environment), `paused` (a rollout that keeps serving and guarding its step but does "
        "not advance), or one of the final ones: `stopped`, `completed` (a rollout whose variant is now active), "
        "`rolled_back` (a rollout a guardrail stopped)."
    )
    status_reason: str | None = Field(
        description="Why a rollout paused, stopped or rolled back, in words (`config_changed`: its variant no longer "
        "resolves as its snapshot; a breached guardrail with its figures); null otherwise."
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
    steps: list[dict[str, int]] | None = Field(
        description="A rollout's steps (`percent`, `hold_seconds`); null for an experiment."
    )
    guardrails: list[dict[str, Any]] | None = Field(
        description="A rollout's guardrails (`metric`, `max_degradation`); null for an experiment."
    )
    min_outcomes: int | None = Field(
        description="A rollout's outcomes per arm and guardrail needed to decide; null for an experiment."
    )
    progress: dict[str, Any] | None = Field(
        description="A started rollout's progress: `step` (from 0), `percent`, `next_step_at` (the earliest the step "
        "may end), `waiting_for` (`hold`, `outcomes` or null), and each guardrail's `metric`, `max_degradation`, "
        "`estimate` and `cs` (the difference variant - live, oriented so that below 0 is worse, and its "
        "always-valid 95% confidence sequence, or null before each arm has 2 outcomes in a step), `n` (outcomes "
        "per arm) and `breached`. Null for experiments and drafts."
    )


def experiment_read(row: Mapping[Any, Any], progress: dict[str, Any] | None = None) -> dict[str, Any]:
    """The experiment object of the contract (plus `slug`, derived from the name): an
    `ExperimentRead`, the one shape routes return and OpenAPI shows, as JSON-ready values.
    A started rollout's `progress` is computed by the caller (`rollouts.progress`)."""
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
        kind=row["kind"],
        status_reason=row["status_reason"],
        steps=row["steps"],
        guardrails=row["guardrails"],
        min_outcomes=row["min_outcomes"],
        progress=progress,
    ).model_dump(mode="json")


class GuardrailFiguresRead(BaseModel):
    """A rollout's guardrail figures at one moment."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "guardrail_figures",
                    "id": "42",
                    "at": EXAMPLE_TIMES[2],
                    "step": 1,
                    "percent": 25,
                    "guardrails": [
                        {
                            "metric": "success_rate",
                            "max_degradation": 0.02,
                            "estimate": -0.004,
                            "cs": [-0.031, 0.023],
                            "n": [1520, 498],
                            "breached": False,
                        }
                    ],
                }
            ]
        }
    )

    object: Literal["guardrail_figures"] = Field(description="Always `guardrail_figures`.")
    id: str = Field(description="Its position in the history (pass it as `after` for the next page).")
    at: str = Field(description="When the figures were taken (RFC 3339, UTC).")
    step: int = Field(description="The step in force then, from 0.")
    percent: int = Field(description="That step's percent.")
    guardrails: list[dict[str, Any]] = Field(
        description="Each guardrail's `metric`, `max_degradation`, `estimate`, `cs`, `n` and `breached`."
    )


def guardrail_figures_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    return GuardrailFiguresRead(
        object="guardrail_figures",
        id=str(row["id"]),
        at=timestamp(row["at"]),
        step=row["step"],
        percent=row["percent"],
        guardrails=row["guardrails"],
    ).model_dump(mode="json")
