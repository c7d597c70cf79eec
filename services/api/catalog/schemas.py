"""Model catalog request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.models import MODEL_CONTEXT_WINDOW_MAX, MODEL_MAX_OUTPUT_TOKENS_MAX
from services.api.schemas import EXAMPLE_TIMES, StrictModel, integer, number, timestamp

# A price per million tokens: up to a million dollars (a bound, not a price anyone charges).
MAX_USD_PER_MTOK = 1_000_000
if TYPE_CHECKING:  # what the validators hand on
    ContextWindow = int
    MaxOutputTokens = int
    UsdPerMtok = float
else:
    ContextWindow = integer(1, MODEL_CONTEXT_WINDOW_MAX)
    MaxOutputTokens = integer(1, MODEL_MAX_OUTPUT_TOKENS_MAX)
    UsdPerMtok = number(0, MAX_USD_PER_MTOK)


class ModelPut(StrictModel):
    """A model's limits and prices, replacing what the catalog holds for it (fields left out
    or null: unknown)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "context_window": 128000,
                    "max_output_tokens": 16384,
                    "input_usd_per_mtok": 0.15,
                    "output_usd_per_mtok": 0.6,
                }
            ]
        }
    )

    context_window: ContextWindow | None = Field(
        None,
        description="The model's context window in tokens (input and output together), 1 to 100,000,000; "
        "null: unknown. Used by the token rule of configs whose own `context_window` is 0.",
    )
    max_output_tokens: MaxOutputTokens | None = Field(
        None,
        description="The most tokens the model generates in one response, 1 to 10,000,000; null: unknown. "
        "A config's `max_tokens` above it is 422 `model_limit`.",
    )
    input_usd_per_mtok: UsdPerMtok | None = Field(
        None, description="US dollars per million input tokens, 0 to 1,000,000; null: unknown."
    )
    output_usd_per_mtok: UsdPerMtok | None = Field(
        None, description="US dollars per million output tokens, 0 to 1,000,000; null: unknown."
    )


MODEL_EXAMPLE: dict[str, Any] = {
    "object": "model",
    "id": "mdl_01JDQ3R0V2X4Z6B8D0F2H4K6M8",
    "provider": "openai",
    "name": "gpt-4o-mini",
    "context_window": 128000,
    "max_output_tokens": 16384,
    "input_usd_per_mtok": 0.15,
    "output_usd_per_mtok": 0.6,
    "source": "api",
    "version": 2,
    "updated_at": EXAMPLE_TIMES[1],
}


class ModelRead(BaseModel):
    """A model of the catalog: its limits, which writes of configs naming it are checked
    against, and its prices, which estimate the cost of outcomes reported without one."""

    model_config = ConfigDict(json_schema_extra={"examples": [MODEL_EXAMPLE]})

    object: Literal["model"] = Field(description="Always `model`.")
    id: str = Field(description="`mdl_` and a ULID; kept when a `PUT` replaces the model.")
    provider: str = Field(description="Who serves it, as configs name it in `model_provider` (`openai`).")
    name: str = Field(description="Its name at the provider, as configs name it in `model_name`; may hold `/`.")
    context_window: int | None = Field(description="Its context window in tokens; null: unknown.")
    max_output_tokens: int | None = Field(description="The most tokens it generates in one response; null: unknown.")
    input_usd_per_mtok: float | None = Field(description="US dollars per million input tokens; null: unknown.")
    output_usd_per_mtok: float | None = Field(description="US dollars per million output tokens; null: unknown.")
    source: str = Field(
        description="Where the row comes from: the seed's data source with its version and date "
        "(`genai-prices 0.2.5 (prices of 2026-12-06)`), or `api` once written by a `PUT`."
    )
    version: int = Field(description="+1 on every change; the `ETag` is this in quotes, for `If-Match`.")
    updated_at: str = Field(description="When it was last written (RFC 3339, UTC).")


def _number(value: Decimal | None) -> float | None:
    # JSON numbers: the catalog's prices have few digits, which a double shows as they are.
    return None if value is None else float(value)


def model_read(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The model object of the contract, as JSON-ready values."""
    return ModelRead(
        object="model",
        id=row["id"],
        provider=row["provider"],
        name=row["name"],
        context_window=row["context_window"],
        max_output_tokens=row["max_output_tokens"],
        input_usd_per_mtok=_number(row["input_usd_per_mtok"]),
        output_usd_per_mtok=_number(row["output_usd_per_mtok"]),
        source=row["source"],
        version=row["version"],
        updated_at=timestamp(row["updated_at"]),
    ).model_dump(mode="json")
