"""Targeting-rule request bodies: a rule set, its rules and their conditions, checked per op.

What a rule means is `services.shared.rules.first_match` (the SDK's one definition); this
module checks what may be written. `null` for `id`, `value` or `values` is the same as leaving
it out. The attribute `subject` names the request's subject in a condition; a request's
*context* may not carry an attribute called `subject` (422), which its own schema checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from services.api.schemas import StrictModel, id_pattern, text, timestamp
from services.api.slugs import LIVE
from services.shared.agent_config import BASE
from services.shared.identifiers import is_id, is_slug
from services.shared.rules import ATTRIBUTE_MAX_LENGTH, ATTRIBUTE_PATTERN, VALUE_MAX_LENGTH, Op

MAX_RULES = 50
MAX_CONDITIONS = 20
MAX_VALUES = 1_000

VALUE_OPS = ("eq", "neq")
LIST_OPS = ("in", "not_in")
TEXT_OPS = ("contains", "starts_with", "ends_with")
NUMBER_OPS = ("gt", "gte", "lt", "lte")
PRESENCE_OPS = ("exists", "not_exists")


# A value longer than this could never equal a context's attribute (a query string's
# `attr.*` values are at most 1,024 characters).
_STRING: TypeAdapter[str] = TypeAdapter(text(0, VALUE_MAX_LENGTH))


def _value(value: Any) -> Any:
    """A string (up to 1,024 characters), a finite number or a boolean (JSON has no other scalar)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        try:
            float(value)  # compared as a double: one too large for a double is refused, as 1e400 is
        except OverflowError:
            raise PydanticCustomError("number_too_large", "must be a number a double holds (|x| < 1.8e308)") from None
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("number_not_finite", "must be a finite number")
        return value
    if isinstance(value, str):
        return _STRING.validate_python(value)  # its errors are this value's
    raise PydanticCustomError("value_type", "must be a string, a number or a boolean")


_VALUE_SCHEMA = {"anyOf": [{"type": "string", "maxLength": VALUE_MAX_LENGTH}, {"type": "number"}, {"type": "boolean"}]}
if TYPE_CHECKING:  # what the validator hands on
    Value = str | int | float | bool
else:
    Value = Annotated[Any, AfterValidator(_value), WithJsonSchema(_VALUE_SCHEMA)]
Attribute = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=ATTRIBUTE_MAX_LENGTH, pattern=ATTRIBUTE_PATTERN)
]


class ConditionIn(StrictModel):
    """One condition: the attribute, the op and what it compares with."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"attribute": "plan", "op": "eq", "value": "pro"}]})

    attribute: Attribute = Field(
        description="The context attribute it reads: 1-64 characters of `A-Z a-z 0-9 _ . -`. `subject` is the "
        "request's subject (missing without one)."
    )
    op: Op = Field(
        description="`eq`, `neq`, `in`, `not_in` (with `values`), `contains`, `starts_with`, `ends_with` (a string "
        "`value`), `gt`, `gte`, `lt`, `lte` (a number `value`), `exists`, `not_exists` (no value)."
    )
    value: Value | None = Field(
        None,
        validate_default=True,
        description="What the attribute is compared with: a string (up to 1,024 characters), a finite number or a "
        "boolean, as the op requires. Not with `in`, `not_in`, `exists`, `not_exists`.",
    )
    values: Annotated[list[Value], Field(min_length=1, max_length=MAX_VALUES)] | None = Field(
        None,
        validate_default=True,
        description="For `in` and `not_in` only: 1 to 1,000 strings, numbers or booleans (types may mix).",
    )

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Value | None, info: ValidationInfo) -> Value | None:
        op = info.data.get("op")  # absent when the op itself is wrong (reported on its own)
        if op in LIST_OPS and value is not None:
            raise PydanticCustomError("value_not_allowed", "{op} takes `values` (a list), not `value`", {"op": op})
        if op in PRESENCE_OPS and value is not None:
            raise PydanticCustomError("value_not_allowed", "{op} takes no value", {"op": op})
        if op in VALUE_OPS + TEXT_OPS + NUMBER_OPS and value is None:
            raise PydanticCustomError("value_required", "required: {op} compares the attribute with it", {"op": op})
        if op in TEXT_OPS and not isinstance(value, str):
            raise PydanticCustomError("value_type", "must be a string for {op}", {"op": op})
        if op in NUMBER_OPS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise PydanticCustomError("value_type", "must be a number for {op} (not a string or a boolean)", {"op": op})
        return value

    @field_validator("values")
    @classmethod
    def _values_fit_op(cls, values: list[Value] | None, info: ValidationInfo) -> list[Value] | None:
        op = info.data.get("op")
        if op in LIST_OPS and values is None:
            raise PydanticCustomError("values_required", "required: {op} takes 1 to 1,000 values", {"op": op})
        if op is not None and op not in LIST_OPS and values is not None:
            raise PydanticCustomError("values_not_allowed", "only in and not_in take `values`")
        return values


def _serve_ref(ref: str) -> str:
    if ref == LIVE:
        raise PydanticCustomError(
            "variant_ref", "'live' names an experiment arm's config: a rule serves `base` or a variant"
        )
    if ref != BASE and not is_id("variant", ref) and not is_slug(ref):
        raise PydanticCustomError("variant_ref", "must be `base`, a variant's id (var_ and a ULID) or its slug")
    return ref


def _rule_id(value: str) -> str:
    if not is_id("rule", value):
        raise PydanticCustomError("invalid_id", "must be the id of a rule (rul_ and a ULID)")
    return value


class ServeIn(StrictModel):
    """What a rule serves."""

    variant: Annotated[text(1, 64), AfterValidator(_serve_ref)] = Field(  # type: ignore[valid-type]
        description="`base`: the agent's base config; or a variant's id or slug (it must exist)."
    )


RULE_EXAMPLE: dict[str, Any] = {
    "name": "Pro plans get the concise variant",
    "when": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}],
    "serve": {"variant": "concise"},
}


class RuleIn(StrictModel):
    """One rule: when all its conditions hold, it serves its variant."""

    model_config = ConfigDict(json_schema_extra={"examples": [RULE_EXAMPLE]})

    id: Annotated[str, Strict(), AfterValidator(_rule_id), id_pattern("rule")] | None = Field(
        None,
        description="`rul_` and a ULID. Omitted: the id of the current rule with this name, else a new one.",
    )
    name: text(1, 128) = Field(description="1-128 characters, unique in the set.")  # type: ignore[valid-type]
    when: Annotated[list[ConditionIn], Field(min_length=1, max_length=MAX_CONDITIONS)] = Field(
        description="1 to 20 conditions; the rule holds when all of them do."
    )
    serve: ServeIn = Field(description="What the rule serves.")


def _repeats(rules: Any) -> list[InitErrorDetails]:
    """A later rule repeating an earlier one's name or id, read from the raw list so that it is
    reported with every other bad field, not only once the rest is valid."""
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        return []  # too many rules is the one error then (the rules themselves are not read)
    found: list[InitErrorDetails] = []
    firsts: dict[tuple[str, str], int] = {}
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        for field in ("name", "id"):
            value = rule.get(field)
            if not isinstance(value, str) or not value:
                continue
            first = firsts.setdefault((field, value), index)
            if first != index:
                error = PydanticCustomError(
                    f"{field}_repeated",
                    "already the {field} of rules[{first}]: a set's rules have distinct {field}s",
                    {"field": field, "first": first},
                )
                found.append(InitErrorDetails(type=error, loc=(index, field), input=value))
    return found


def _again(error: ValidationError) -> list[InitErrorDetails]:
    """A ValidationError's errors as they were (type, message, where), to raise with others."""
    return [
        InitErrorDetails(type=PydanticCustomError(e["type"], e["msg"]), loc=e["loc"], input=e["input"])
        for e in error.errors(include_url=False)
    ]


_FIELD_ORDER = {"id": 0, "name": 1, "when": 2, "serve": 3}


def _where(detail: InitErrorDetails) -> tuple[int, int]:
    """An error's rule, then its field in the order a rule declares them."""
    loc = detail["loc"] if "loc" in detail else ()
    index = loc[0] if loc and isinstance(loc[0], int) else -1
    field = _FIELD_ORDER.get(str(loc[1]), 4) if len(loc) > 1 else -1
    return index, field


class RuleSetReplace(StrictModel):
    """An agent's whole rule set in one environment, replacing the current one (`PUT .../rules`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"rules": [RULE_EXAMPLE]}]})

    rules: Annotated[list[RuleIn], Field(max_length=MAX_RULES)] = Field(
        description="At most 50 rules, in the order they are tried: the first whose conditions all hold serves. "
        "An empty list removes every rule."
    )

    @field_validator("rules", mode="wrap")
    @classmethod
    def _distinct(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> list[RuleIn]:
        repeats = _repeats(value)
        try:
            rules: list[RuleIn] = handler(value)
        except ValidationError as error:
            if not repeats:
                raise
            # Both kinds, in the order of the rules they name.
            details = sorted(_again(error) + repeats, key=_where)
            raise ValidationError.from_exception_data(error.title, details) from None
        if repeats:
            raise ValidationError.from_exception_data(cls.__name__, repeats)
        return rules


class RuleRead(StrictModel):
    """A stored rule: always with its id; `serve.variant` is `base` or the variant's id."""

    id: str = Field(description="`rul_` and a ULID; kept while a rule of that name stays in the set.")
    name: str = Field(description="Unique in the set.")
    when: list[ConditionIn] = Field(description="Its conditions, as written; all must hold.")
    serve: ServeIn = Field(
        description='`{"variant": "base"}` or the served variant\'s id (a slug sent is stored as the id, so a '
        "rule keeps serving the variant when its slug changes)."
    )


RULE_SET_EXAMPLE: dict[str, Any] = {
    "object": "rule_set",
    "agent_id": "agt_01JDQ3V0Y8K2M4N6P8R0S2T4V6",
    "environment": "production",
    "rules": [
        {
            "id": "rul_01JDQ3X1B3D5F7H9K1M3P5R7T9",
            **RULE_EXAMPLE,
            "serve": {"variant": "var_01JDQ3W5A7C9E1G3J5K7M9P1R3"},
        }
    ],
    "version": 3,
    "updated_at": "2026-11-22T10:05:00.000000Z",
}


class RuleSetRead(StrictModel):
    """An agent's targeting rules in one environment (`GET`/`PUT .../rules`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [RULE_SET_EXAMPLE]})

    object: Literal["rule_set"] = Field(description="Always `rule_set`.")
    agent_id: str = Field(description="The agent's id.")
    environment: str = Field(description="The environment's slug.")
    rules: list[RuleRead] = Field(description="In the order they are tried; empty when there are none.")
    version: int = Field(
        description="+1 on every change of the set; 0 for a set never written. The `ETag` is this in quotes."
    )
    updated_at: str | None = Field(description="When the set last changed (RFC 3339, UTC); null if never written.")


def rule_set_read(agent_id: str, environment_slug: str, row: Mapping[Any, Any] | None) -> dict[str, Any]:
    """The rule-set object of the contract; `row` None is the set never written (version 0)."""
    return {
        "object": "rule_set",
        "agent_id": agent_id,
        "environment": environment_slug,
        "rules": list(row["rules"]) if row is not None else [],
        "version": row["version"] if row is not None else 0,
        "updated_at": timestamp(row["updated_at"]) if row is not None else None,
    }
