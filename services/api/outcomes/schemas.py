"""Outcome request bodies and the usage and results objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from services.api.errors import SEVERAL_FIELDS
from services.api.schemas import EXAMPLE_IDS, StrictModel, id_pattern, integer, number, text
from services.shared.identifiers import is_id

MAX_BATCH = 1000


def _id_of(kind: str):
    def check(value: str | None) -> str | None:
        if value is not None and not is_id(kind, value):
            raise ValueError(f"must be the id of {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
        return value

    return AfterValidator(check)


# Outcome numbers are bounded (contract 1.1), so no sum, mean or variance over them can
# overflow a double: with |x| <= 1e12, n * x**2 stays finite for any count of rows.
BOUND = 10**12
if TYPE_CHECKING:  # what the validators hand on
    Count = int
    NonNegative = float
    Score = float
    Arm = int
else:
    Count = integer(0, BOUND)
    NonNegative = number(0, BOUND)
    Score = number(-BOUND, BOUND)
    Arm = integer(0, 9)


class OutcomeIn(StrictModel):
    """One run: which variant served it (null: the base config), tokens, latency, and
    optionally its cost, whether it succeeded and a score."""

    variant_id: Annotated[Annotated[str, id_pattern("variant")] | None, _id_of("variant")]
    experiment_id: Annotated[Annotated[str, id_pattern("experiment")] | None, _id_of("experiment")] = None
    environment: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="The environment it ran in, by slug or id (contract 1.1); omitted: the experiment's when "
        "`experiment_id` names one, else the request's (`?environment=`, the key's, else `production`).",
    )
    subject: text(1, 256) | None = None  # type: ignore[valid-type]
    input_tokens: Count
    output_tokens: Count
    latency_ms: NonNegative
    cost_usd: NonNegative | None = None
    success: StrictBool | None = None
    score: Score | None = None
    arm: Arm | None = Field(
        None,
        description="The arm of `experiment_id` that served it (contract 1.1): it wins over `variant_id` for "
        "attribution (the outcome counts for that arm's config). Needs `experiment_id`.",
    )

    @model_validator(mode="after")
    def _arm_needs_its_experiment(self) -> OutcomeIn:
        if self.arm is not None and self.experiment_id is None:
            raise PydanticCustomError(
                SEVERAL_FIELDS,
                "arm: names an arm of experiment_id, which is missing",
                {"errors": [("arm", "needs experiment_id")]},
            )
        return self


class OutcomeBatch(StrictModel):
    data: Annotated[list[OutcomeIn], Field(min_length=1, max_length=MAX_BATCH)]


def outcomes_body_schema() -> dict[str, Any]:
    """The body of `POST .../outcomes` as the document shows it: one outcome, or
    `{"data": [...]}` with 1 to 1,000 (no other key)."""
    one = OutcomeIn.model_json_schema()
    batch = {
        "type": "object",
        "title": "OutcomeBatch",
        "properties": {"data": {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_BATCH}},
        "required": ["data"],
        "additionalProperties": False,
    }
    return {"oneOf": [one, batch]}


class Accepted(BaseModel):
    """The outcomes are stored: they count in `/usage` and `/results` from now on."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"object": "outcome_batch", "accepted": 2}]})

    object: Literal["outcome_batch"] = Field(description="Always `outcome_batch`.")
    accepted: int = Field(description="How many outcomes were stored (all that were sent).")


NULL_VARIANT = "The variant that served them; null: the agent's base config."


class VariantUsage(BaseModel):
    """The outcomes one config served."""

    variant_id: str | None = Field(description=NULL_VARIANT)
    input_tokens: int = Field(description="Input tokens, summed.")
    output_tokens: int = Field(description="Output tokens, summed.")
    total_tokens: int = Field(description="Input and output tokens, summed.")
    outcomes: int = Field(description="How many outcomes were reported.")
    cost_usd: float = Field(
        description="The known costs in US dollars, summed: those reported, and those estimated from the model "
        "catalog's prices for outcomes reported without one (0 when none is known)."
    )
    estimated_cost_usd: float = Field(
        description="The part of `cost_usd` that was estimated (outcomes reported without `cost_usd`, priced "
        "at ingestion from the catalog's prices of the model their config served)."
    )


class Usage(BaseModel):
    """Tokens and runs reported for an agent, overall and by the config that served them, in
    one environment or in all of them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "usage",
                    "environment": "production",
                    "input_tokens": 1_284_310,
                    "output_tokens": 241_877,
                    "total_tokens": 1_526_187,
                    "outcomes": 1_562,
                    "cost_usd": 0.32836,
                    "estimated_cost_usd": 0.1529,
                    "by_variant": [
                        {
                            "variant_id": EXAMPLE_IDS["variant"],
                            "input_tokens": 640_102,
                            "output_tokens": 95_311,
                            "total_tokens": 735_413,
                            "outcomes": 781,
                            "cost_usd": 0.1529,
                            "estimated_cost_usd": 0.1529,
                        },
                        {
                            "variant_id": None,
                            "input_tokens": 644_208,
                            "output_tokens": 146_566,
                            "total_tokens": 790_774,
                            "outcomes": 781,
                            "cost_usd": 0.17546,
                            "estimated_cost_usd": 0.0,
                        },
                    ],
                }
            ]
        }
    )

    object: Literal["usage"] = Field(description="Always `usage`.")
    environment: str | None = Field(description="The slug of the environment counted; null: every environment, summed.")
    input_tokens: int = Field(description="Input tokens of every outcome reported, summed.")
    output_tokens: int = Field(description="Output tokens, summed.")
    total_tokens: int = Field(description="Input and output tokens, summed.")
    outcomes: int = Field(description="How many outcomes were reported.")
    cost_usd: float = Field(
        description="The known costs in US dollars, summed: those reported, and those estimated from the model "
        "catalog's prices for outcomes reported without one (0 when none is known)."
    )
    estimated_cost_usd: float = Field(
        description="The part of `cost_usd` that was estimated (outcomes reported without `cost_usd`, priced "
        "at ingestion from the catalog's prices of the model their config served)."
    )
    by_variant: list[VariantUsage] = Field(description="The same, for each config that served outcomes.")


class VersusControl(BaseModel):
    """Arm minus control; two-sided p-values (pooled z-test, Welch's t-test)."""

    success_rate_diff: float | None = Field(description="This arm's success rate minus the control's.")
    success_p_value: float | None = Field(
        description="Two-sided p-value of that difference (pooled two-proportion z-test)."
    )
    score_mean_diff: float | None = Field(description="This arm's mean score minus the control's.")
    score_p_value: float | None = Field(description="Two-sided p-value of that difference (Welch's t-test).")


NO_DATA = "null when no outcome has it."

_CS = (
    "Always-valid 95% interval `[low, high]` of this arm's {what} minus the control's (not negated: for "
    "latency, cost and tokens a positive difference is worse): an asymptotic confidence sequence "
    "(Waudby-Smith et al., Ann. Statist. 2024, Thm 2.2, tuned for 10,000 outcomes), so it stays valid "
    "however often results are read. null with fewer than two {which} in either arm."
)


class SequentialVersusControl(BaseModel):
    """Arm minus control, always-valid (contract 1.1): each `[lo, hi]` or null."""

    success_rate_diff_cs: tuple[float, float] | None = Field(
        description=_CS.format(what="success rate", which="outcomes reporting `success`")
    )
    score_mean_diff_cs: tuple[float, float] | None = Field(description=_CS.format(what="mean score", which="scores"))
    latency_ms_mean_diff_cs: tuple[float, float] | None = Field(
        description=_CS.format(what="mean latency (ms)", which="outcomes")
    )
    cost_usd_mean_diff_cs: tuple[float, float] | None = Field(
        description=_CS.format(what="mean known cost (USD)", which="outcomes with a known cost")
    )
    output_tokens_mean_diff_cs: tuple[float, float] | None = Field(
        description=_CS.format(what="mean output tokens", which="outcomes")
    )


class ArmResults(BaseModel):
    """One arm's figures, from the outcomes reported for it."""

    arm: int = Field(description="The arm's number; 0 is the control.")
    variant_id: str | None = Field(description="The variant the arm serves; null: the agent's base config.")
    weight: int = Field(description="The arm's weight.")
    outcomes: int = Field(description="How many outcomes were reported for the arm.")
    input_tokens: int = Field(description="Input tokens, summed.")
    output_tokens: int = Field(description="Output tokens, summed.")
    cost_usd: float = Field(
        description="The known costs in US dollars, summed: those reported, and those estimated from the model "
        "catalog's prices for outcomes reported without one (0 when none is known)."
    )
    estimated_cost_usd: float = Field(
        description="The part of `cost_usd` that was estimated (outcomes reported without `cost_usd`, priced "
        "at ingestion from the catalog's prices of the model their config served)."
    )
    mean_input_tokens: float | None = Field(description="Input tokens per outcome; " + NO_DATA)
    mean_output_tokens: float | None = Field(description="Output tokens per outcome; " + NO_DATA)
    latency_ms_p50: float | None = Field(description="Median latency in milliseconds (interpolated); " + NO_DATA)
    latency_ms_p95: float | None = Field(description="95th percentile latency in milliseconds; " + NO_DATA)
    success_rate: float | None = Field(description="Share of outcomes with `success: true`, 0 to 1; " + NO_DATA)
    success_rate_ci: tuple[float, float] | None = Field(  # 95% Wilson
        description="Its 95% Wilson interval `[low, high]`; " + NO_DATA
    )
    score_mean: float | None = Field(description="Mean `score`; " + NO_DATA)
    score_mean_ci: tuple[float, float] | None = Field(  # 95% t
        description="Its 95% t interval `[low, high]`; null with fewer than two scores."
    )
    vs_control: VersusControl | None = Field(  # null on the control (the first arm)
        description="Comparison with the control; null on the control itself."
    )
    sequential: SequentialVersusControl | None = Field(  # null on the control (the first arm)
        description="Always-valid intervals of the differences with the control, safe to watch as outcomes "
        "arrive; null on the control itself."
    )


RESULTS_EXAMPLE: dict[str, Any] = {
    "object": "experiment_results",
    "experiment_id": EXAMPLE_IDS["experiment"],
    "status": "running",
    "arms": [
        {
            "arm": 0,
            "variant_id": None,
            "weight": 1,
            "outcomes": 781,
            "input_tokens": 644_208,
            "output_tokens": 146_566,
            "cost_usd": 0.17546,
            "estimated_cost_usd": 0.0,
            "mean_input_tokens": 824.85,
            "mean_output_tokens": 187.66,
            "latency_ms_p50": 912.0,
            "latency_ms_p95": 2140.5,
            "success_rate": 0.8105,
            "success_rate_ci": [0.7818, 0.8361],
            "score_mean": 4.12,
            "score_mean_ci": [4.05, 4.19],
            "vs_control": None,
            "sequential": None,
        },
        {
            "arm": 1,
            "variant_id": EXAMPLE_IDS["variant"],
            "weight": 1,
            "outcomes": 781,
            "input_tokens": 640_102,
            "output_tokens": 95_311,
            "cost_usd": 0.1529,
            "estimated_cost_usd": 0.1529,
            "mean_input_tokens": 819.59,
            "mean_output_tokens": 122.04,
            "latency_ms_p50": 604.0,
            "latency_ms_p95": 1288.0,
            "success_rate": 0.7964,
            "success_rate_ci": [0.7670, 0.8229],
            "score_mean": 4.07,
            "score_mean_ci": [4.0, 4.14],
            "vs_control": {
                "success_rate_diff": -0.0141,
                "success_p_value": 0.4841,
                "score_mean_diff": -0.05,
                "score_p_value": 0.3317,
            },
            "sequential": {
                "success_rate_diff_cs": [-0.0847, 0.0565],
                "score_mean_diff_cs": [-0.2273, 0.1273],
                "latency_ms_mean_diff_cs": [-410.9, -189.1],
                "cost_usd_mean_diff_cs": [-0.0000475, -0.0000103],
                "output_tokens_mean_diff_cs": [-81.19, -50.05],
            },
        },
    ],
}


class ExperimentResults(BaseModel):
    """Each arm's figures, and how each compares with the control."""

    model_config = ConfigDict(json_schema_extra={"examples": [RESULTS_EXAMPLE]})

    object: Literal["experiment_results"] = Field(description="Always `experiment_results`.")
    experiment_id: str = Field(description="The experiment.")
    status: Literal["draft", "running", "paused", "stopped", "completed", "rolled_back"] = Field(
        description="The experiment's (or rollout's) status now."
    )
    arms: list[ArmResults] = Field(description="Every arm, in order; the first is the control.")
