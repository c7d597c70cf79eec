"""Outcome request bodies and the usage and results objects."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictBool

from services.api.schemas import StrictModel, text
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
Count = Annotated[int, Field(strict=True, ge=0, le=BOUND)]
NonNegative = Annotated[float, Field(ge=0, le=BOUND, allow_inf_nan=False)]
Score = Annotated[float, Field(ge=-BOUND, le=BOUND, allow_inf_nan=False)]


class OutcomeIn(StrictModel):
    """One run: which variant served it (null: the base config), tokens, latency, and
    optionally its cost, whether it succeeded and a score."""

    variant_id: Annotated[str | None, _id_of("variant")]
    experiment_id: Annotated[str | None, _id_of("experiment")] = None
    subject: text(1, 256) | None = None  # type: ignore[valid-type]
    input_tokens: Count
    output_tokens: Count
    latency_ms: NonNegative
    cost_usd: NonNegative | None = None
    success: StrictBool | None = None
    score: Score | None = None


class OutcomeBatch(StrictModel):
    data: Annotated[list[OutcomeIn], Field(min_length=1, max_length=MAX_BATCH)]


class Accepted(BaseModel):
    object: Literal["outcome_batch"]
    accepted: int


class VariantUsage(BaseModel):
    variant_id: str | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    outcomes: int


class Usage(BaseModel):
    object: Literal["usage"]
    input_tokens: int
    output_tokens: int
    total_tokens: int
    outcomes: int
    by_variant: list[VariantUsage]


class VersusControl(BaseModel):
    """Arm minus control; two-sided p-values (pooled z-test, Welch's t-test)."""

    success_rate_diff: float | None
    success_p_value: float | None
    score_mean_diff: float | None
    score_p_value: float | None


class ArmResults(BaseModel):
    arm: int
    variant_id: str | None
    weight: int
    outcomes: int
    input_tokens: int
    output_tokens: int
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    success_rate: float | None
    success_rate_ci: tuple[float, float] | None  # 95% Wilson
    score_mean: float | None
    score_mean_ci: tuple[float, float] | None  # 95% t
    vs_control: VersusControl | None  # null on the control (the first arm)


class ExperimentResults(BaseModel):
    object: Literal["experiment_results"]
    experiment_id: str
    status: Literal["draft", "running", "stopped"]
    arms: list[ArmResults]
