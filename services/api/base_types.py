"""The request types every schema module builds on: strings PostgreSQL can store, and
bodies that refuse unknown fields. (`services.api.schemas` re-exports them.)"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, GetJsonSchemaHandler, Strict, StringConstraints
from pydantic.json_schema import JsonSchemaValue


def _storable(value: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON can spell)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogate code points)") from None
    return value


# No NUL, as a JSON Schema (ECMA-262) pattern. Lone surrogates have no pattern that every
# validator reads alike; `_storable` refuses them (422).
NO_NUL_PATTERN = "^[^\\u0000]*$"


class _NoNul:
    """Shows `_storable`'s NUL rule in a string's JSON Schema."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = NO_NUL_PATTERN
        return schema


def text(min_length: int = 0, max_length: int | None = None) -> Any:
    """A strict string of min..max characters that PostgreSQL can store."""
    return Annotated[
        str,
        Strict(),
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_storable),
        _NoNul(),
    ]


Description = text(0, 4096)


class StrictModel(BaseModel):
    """Request bodies: unknown fields are a 422, never silently dropped."""

    model_config = ConfigDict(extra="forbid")
