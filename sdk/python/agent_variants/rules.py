"""Targeting rules: which rule of an ordered set serves a request's context, exactly as the contract defines it.

Standard library only, so the service, the SDK and any agent pick the same rule offline
(the service imports it from here: `services.shared.rules` re-exports it). The rule set
comes as the API writes it (`{"id", "name", "when": [conditions], "serve"}`); only `when` is read.

- The context is the request's subject and attributes. The attribute `subject` is the subject
  (missing without one); an attribute may not be named `subject` (`ValueError`).
- A numeric string matches `^-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?$` (ASCII digits,
  nothing before or after: no `+1`, `01`, ` 1`, `1.`, `.5`, `1\\n`). Numbers, numeric strings
  and values compare as IEEE-754 doubles, converted with round-to-nearest: `"1e400"` and the
  integer `10**400` are infinity, `"1e-400"` is 0, `"-0"` equals `0`, `2**53 + 1` equals `2**53`,
  and NaN equals nothing and is neither greater nor smaller than anything.
- A boolean is never a number (Python's `True == 1` does not apply): a number value never
  matches a boolean attribute, nor a boolean value a number.
- `eq`: a number value matches a number or numeric string of equal value; a boolean value
  that boolean or the exact string `"true"`/`"false"`; a string value an identical string only.
  `in`: some `eq` holds. `neq`, `not_in`: the negation, for a present attribute.
  `contains`, `starts_with`, `ends_with`: string value, string attribute, case-sensitive.
  `gt`, `gte`, `lt`, `lte`: number value, attribute a number or numeric string.
  `exists`, `not_exists`: no value. Anything else on a present attribute (another type, an
  unknown op, a malformed condition such as `eq` without a value or `in` with no values),
  and every op but `not_exists` on a missing one, is false.
- A rule holds when all its conditions hold; the first rule that holds is the answer. A rule
  with no conditions (which the API never stores) holds for nothing.

No regular expression comes from a rule (the one pattern above is fixed) and nothing is
cached between calls: one call reads each condition once, and each value of `values` at
most once, so its cost is linear in the size of the rule set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, NotRequired, TypeAlias, TypedDict, TypeVar, get_args

Scalar: TypeAlias = str | int | float | bool
"""What an attribute or a condition's value may be."""

Op = Literal[
    "eq",
    "neq",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
    "not_exists",
]
OPS: Final[tuple[str, ...]] = get_args(Op)  # every op, in the Literal's order
SUBJECT: Final = "subject"
NUMERIC_STRING: Final = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
# fullmatch: `$` alone would also match before a trailing newline ("1\n").
_NUMERIC = re.compile(NUMERIC_STRING[1:-1], re.ASCII)


class Condition(TypedDict):
    """One condition: `value` for most ops, `values` for `in`/`not_in`, neither for `exists`/`not_exists`."""

    attribute: str
    op: str
    value: NotRequired[Scalar]
    values: NotRequired[Sequence[Scalar]]


class Serve(TypedDict):
    variant: str


class Rule(TypedDict):
    """A rule as the API writes it (a bundle's rule adds its served `resolved` config)."""

    id: str
    name: str
    when: Sequence[Condition]
    serve: Serve


RuleT = TypeVar("RuleT", bound=Mapping[str, Any])


class _Attribute(NamedTuple):
    """A present attribute as each kind of value sees it (None: that kind never matches it)."""

    text: str | None
    number: float | None
    boolean: bool | None


def is_numeric_string(value: str) -> bool:
    """True when `value` is a numeric string of the contract."""
    return _NUMERIC.fullmatch(value) is not None


def _double(number: int | float) -> float:
    """The IEEE-754 double nearest `number` (an int too large for one is +-infinity)."""
    try:
        return float(number)
    except OverflowError:  # float(10**400) raises where the IEEE conversion gives infinity
        return math.inf if number > 0 else -math.inf


def _attribute(value: object) -> _Attribute:
    if isinstance(value, bool):
        return _Attribute(None, None, value)
    if isinstance(value, int | float):
        return _Attribute(None, _double(value), None)
    if isinstance(value, str):
        number = float(value) if is_numeric_string(value) else None
        boolean = True if value == "true" else False if value == "false" else None
        return _Attribute(value, number, boolean)
    raise ValueError(f"an attribute must be a string, a number or a boolean, not {type(value).__name__}")


def _eq(value: object, attribute: _Attribute) -> bool:
    if isinstance(value, bool):
        return attribute.boolean is value
    if isinstance(value, int | float):
        return attribute.number is not None and attribute.number == _double(value)
    if isinstance(value, str):
        return attribute.text is not None and attribute.text == value
    return False  # not a value at all: nothing is equal to it


def _is_value(value: object) -> bool:
    return isinstance(value, str | int | float)  # bool is an int


def _in(values: Sequence[object], attribute: _Attribute) -> bool:
    """Whether some value is `eq` to the attribute."""
    # A string equals only an identical string, so `in` (a scan in C) is eq for string values;
    # only an attribute that reads as a number or a boolean needs a look at the other values.
    if attribute.text is not None and attribute.text in values:
        return True
    if attribute.number is None and attribute.boolean is None:
        return False
    return any(_eq(item, attribute) for item in values)


def _values(condition: Mapping[str, Any]) -> Sequence[object] | None:
    values = condition.get("values")
    if isinstance(values, Sequence) and not isinstance(values, str | bytes):
        return values
    return None


def _compare(op: str, number: float, value: float) -> bool:
    if op == "gt":
        return number > value
    if op == "gte":
        return number >= value
    if op == "lt":
        return number < value
    return number <= value


def _holds(condition: Mapping[str, Any], attribute: _Attribute | None) -> bool:
    """Whether one condition holds for the attribute it names (None: missing)."""
    op = condition.get("op")
    if attribute is None:
        return op == "not_exists"
    if op == "exists":
        return True
    value = condition.get("value")
    if op == "eq":
        return _eq(value, attribute)
    if op == "neq":
        return _is_value(value) and not _eq(value, attribute)
    if op == "in" or op == "not_in":
        values = _values(condition)
        if not values:
            return False  # malformed: `values` holds 1 to 1,000 values
        found = _in(values, attribute)
        return found if op == "in" else not found
    if op == "contains" or op == "starts_with" or op == "ends_with":
        if not isinstance(value, str) or attribute.text is None:
            return False
        if op == "contains":
            return value in attribute.text
        if op == "starts_with":
            return attribute.text.startswith(value)
        return attribute.text.endswith(value)
    if op == "gt" or op == "gte" or op == "lt" or op == "lte":
        if not isinstance(value, int | float) or isinstance(value, bool) or attribute.number is None:
            return False
        return _compare(op, attribute.number, _double(value))
    return False  # not_exists on a present attribute, or an op this SDK does not know


def context_attributes(subject: str | None, attributes: Mapping[str, Scalar] | None) -> dict[str, Scalar]:
    """The attributes rules see: `attributes` and, with a subject, `subject`.

    Raises ValueError for an attribute named `subject`, a name that is not a string, or a
    value that is not a string, a number or a boolean.
    """
    merged: dict[str, Scalar] = {}
    for name, value in (attributes or {}).items():
        if not isinstance(name, str):
            raise ValueError(f"an attribute's name must be a string, not {type(name).__name__}")
        if name == SUBJECT:
            raise ValueError("'subject' cannot be an attribute: pass it as the subject")
        if not isinstance(value, str | int | float):
            raise ValueError(f"attribute {name!r} must be a string, a number or a boolean, not {type(value).__name__}")
        merged[name] = value
    if subject is not None:
        if not isinstance(subject, str):
            raise ValueError(f"the subject must be a string, not {type(subject).__name__}")
        merged[SUBJECT] = subject
    return merged


# A request's context (contract 1.1, "Targeting rules and context"): the limits the service
# puts on the attributes it is sent, checked by `attribute_errors`.
MAX_ATTRIBUTES: Final = 50
ATTRIBUTE_MAX_LENGTH: Final = 64
ATTRIBUTE_PATTERN: Final = r"^[A-Za-z0-9_.-]+$"
VALUE_MAX_LENGTH: Final = 1_024
_ATTRIBUTE_NAME = re.compile(ATTRIBUTE_PATTERN[1:-1], re.ASCII)


def _value_error(value: object) -> str | None:
    """Why an attribute's value cannot be sent, or None when it can."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            float(value)  # compared as a double: one too large for a double is refused, as 1e400 is
        except OverflowError:
            return "must be a number a double holds (|x| < 1.8e308)"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(value, str):
        return None if len(value) <= VALUE_MAX_LENGTH else f"must be at most {VALUE_MAX_LENGTH} characters"
    return f"must be a string, a number or a boolean, not {type(value).__name__}"


def attribute_errors(attributes: Mapping[Any, object] | None) -> list[dict[str, str]]:
    """Every reason the service would refuse these context attributes, as problem+json
    `errors` (`{"param": "attributes.<name>", "message"}`); empty when it would take them.

    At most 50 attributes; names 1-64 characters of [A-Za-z0-9_.-], never `subject` (the
    request's subject has its own parameter); values strings up to 1,024 characters,
    finite numbers or booleans.
    """
    if not attributes:
        return []
    errors: list[dict[str, str]] = []
    if len(attributes) > MAX_ATTRIBUTES:
        errors.append({"param": "attributes", "message": f"at most {MAX_ATTRIBUTES} attributes, not {len(attributes)}"})
    for name, value in attributes.items():
        param = f"attributes.{name}"
        if not isinstance(name, str):
            errors.append({"param": param, "message": f"a name must be a string, not {type(name).__name__}"})
            continue
        if name == SUBJECT:
            errors.append({"param": param, "message": "'subject' cannot be an attribute: pass it as the subject"})
        elif not 1 <= len(name) <= ATTRIBUTE_MAX_LENGTH or _ATTRIBUTE_NAME.fullmatch(name) is None:
            errors.append(
                {"param": param, "message": f"a name is 1-{ATTRIBUTE_MAX_LENGTH} characters of A-Z, a-z, 0-9, _ . -"}
            )
        problem = _value_error(value)
        if problem is not None:
            errors.append({"param": param, "message": problem})
    return errors


def first_match(
    rules: Sequence[RuleT],
    *,
    subject: str | None = None,
    attributes: Mapping[str, Scalar] | None = None,
) -> RuleT | None:
    """The first rule, in order, whose conditions all hold for the context; None when none does.

    Pure and deterministic: the same rules and context give the same rule (the very object
    passed in), in the server and every SDK. Raises ValueError for a context the API would
    refuse (see `context_attributes`).
    """
    present = context_attributes(subject, attributes)
    seen: dict[str, _Attribute] = {}

    def attribute(name: object) -> _Attribute | None:
        if not isinstance(name, str) or name not in present:
            return None
        view = seen.get(name)
        if view is None:
            view = seen[name] = _attribute(present[name])
        return view

    for rule in rules:
        when = rule.get("when")
        if not isinstance(when, Sequence) or isinstance(when, str | bytes) or not when:
            continue  # malformed (a rule has 1 to 20 conditions): it holds for no context
        if all(isinstance(c, Mapping) and _holds(c, attribute(c.get("attribute"))) for c in when):
            return rule
    return None
