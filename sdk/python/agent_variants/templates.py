"""Prompt templates (contract 1.1, "The config an agent really runs with"): finding their
placeholders and rendering them, exactly as the contract defines it.

Standard library only, so the service and every SDK read and render a template the same
way (the service imports it from here: `services.shared.templates` re-exports it).

- A placeholder is `{{name}}`: two opening braces, optional spaces, an identifier
  (`^[A-Za-z_][A-Za-z0-9_]{0,63}$`), optional spaces, two closing braces.
- Every other brace is literal text, so JSON in a prompt (`{"a": {"b": 1}}`) needs no
  escaping. Reading left to right, a `{{` opens a placeholder that ends at the first `}}`
  after it; when what lies between is not an identifier with optional spaces (`{{a.b}}`,
  `{{ 0 }}`, `{{}}`), the template is invalid (`TemplateError`, the API's 422
  `invalid_template`). A `{{` with no `}}` after it is literal text.
- Rendering replaces each placeholder with its variable's value: a string as it is, a
  boolean as `true`/`false`, a number as ECMAScript's Number::toString writes the double
  nearest to it (`1`, `0.5`, `1e-7`, `1.5e+21`, `-0` as `0`), so every SDK renders the
  same text whatever its language.

Linear in the template's length; no regular expression comes from a template.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final, NamedTuple

VARIABLE_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_NAME = re.compile(VARIABLE_NAME[1:-1])
# What lies between the braces of a valid placeholder: spaces, an identifier, spaces.
_INSIDE = re.compile(r" *([A-Za-z_][A-Za-z0-9_]{0,63}) *")

Value = str | int | float | bool


class TemplateError(ValueError):
    """A `{{` that opens no valid placeholder before its `}}`: `position` is the index of
    that `{{`, `text` what lies between the braces."""

    def __init__(self, position: int, text: str) -> None:
        super().__init__(
            f"'{{{{{text}}}}}' at character {position} is not a placeholder: "
            "write {{name}} with a name of letters, digits and _ (not starting with a digit)"
        )
        self.position = position
        self.text = text


class Placeholder(NamedTuple):
    name: str
    start: int  # the index of its `{{`
    end: int  # the index just past its `}}`


def placeholders(template: str) -> list[Placeholder]:
    """Every placeholder of the template, in order (a name may repeat). Raises
    `TemplateError` at the first `{{` that opens no valid placeholder."""
    found: list[Placeholder] = []
    at = template.find("{{")
    while at != -1:
        close = template.find("}}", at + 2)
        if close == -1:
            break  # no `}}` after it: literal text, and so is everything after
        inside = template[at + 2 : close]
        match = _INSIDE.fullmatch(inside)
        if match is None:
            raise TemplateError(at, inside)
        found.append(Placeholder(match.group(1), at, close + 2))
        at = template.find("{{", close + 2)
    return found


def variable_names(template: str) -> list[str]:
    """The names the template uses, each once, in the order they first appear."""
    return list(dict.fromkeys(placeholder.name for placeholder in placeholders(template)))


def number_text(value: int | float) -> str:
    """ECMAScript's Number::toString of the double nearest to `value` (finite)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if number == 0:
        return "0"  # -0 included
    sign = "-" if number < 0 else ""
    # repr gives the shortest digits that read back as the same double, as the spec's
    # algorithm does; Decimal splits them into digits and an exponent.
    shortest = Decimal(repr(abs(number))).normalize().as_tuple()
    digits = "".join(map(str, shortest.digits))
    exponent = shortest.exponent
    assert isinstance(exponent, int)  # finite
    k = len(digits)
    n = exponent + k  # the value is 0.digits × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def value_text(value: Value) -> str:
    """A variable's value as a template shows it."""
    if isinstance(value, bool):  # before int: True is an int in Python
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"a variable's value is a string, a number or a boolean, not {type(value).__name__}")


def render(template: str, values: Mapping[str, Value]) -> str:
    """The template with each placeholder replaced by its value. Raises `TemplateError` for
    an invalid template and KeyError naming a placeholder `values` lacks (checking the
    variables a config declares, and their defaults, is the caller's)."""
    parts: list[str] = []
    at = 0
    for placeholder in placeholders(template):
        parts.append(template[at : placeholder.start])
        parts.append(value_text(values[placeholder.name]))
        at = placeholder.end
    parts.append(template[at:])
    return "".join(parts)


def is_variable_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


VARIABLE_TYPES: Final = ("string", "number", "integer", "boolean")


class RenderError(ValueError):
    """Variables a render refuses: `code` is the API's (`missing_variable`,
    `unknown_variable` or `validation_error`, the first kind found in that order) and
    `errors` names every bad variable (`[(param, message)]`, params like `variables.tone`)."""

    def __init__(self, code: str, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{param}: {message}" for param, message in errors))
        self.code = code
        self.errors = errors


def type_error(kind: str, value: object) -> str | None:
    """Why `value` is not of the declared type, or None when it is. A whole number written
    with a point (`40.0`) is that integer, as JSON Schema's `integer` holds it."""
    if kind == "string":
        return None if isinstance(value, str) else "must be a string"
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be a boolean"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a{'n integer' if kind == 'integer' else ' finite number'}"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a double: no number a template can show
        finite = False
    if not finite:
        return f"must be a{'n integer' if kind == 'integer' else ' finite number'} a double can hold"
    if kind == "integer" and not float(value).is_integer():
        return "must be a whole number"
    return None


def resolve_variables(declared: Mapping[str, Mapping[str, object]], given: Mapping[str, object]) -> dict[str, Value]:
    """The values a render uses: those `given`, checked against the `declared` variables
    (`{name: {"type", "required"?: true, "default"?}}`), with defaults filling the optional
    ones left out. Raises `RenderError` naming every variable that is missing (required,
    no default, not given), undeclared, or of the wrong type."""
    errors: dict[str, list[tuple[str, str]]] = {"missing_variable": [], "unknown_variable": [], "validation_error": []}
    values: dict[str, Value] = {}
    for name, spec in declared.items():
        if name in given:
            problem = type_error(str(spec.get("type", "string")), given[name])
            if problem is not None:
                errors["validation_error"].append((f"variables.{name}", problem))
            else:
                values[name] = given[name]  # type: ignore[assignment]  # checked just above
        elif "default" in spec:
            values[name] = spec["default"]  # type: ignore[assignment]  # checked when declared
        elif spec.get("required", True):
            errors["missing_variable"].append((f"variables.{name}", "required, and has no default"))
    for name in given:
        if name not in declared:
            errors["unknown_variable"].append((f"variables.{name}", "not a declared variable"))
    for code, found in errors.items():
        if found:
            raise RenderError(code, [error for errors_of_kind in errors.values() for error in errors_of_kind])
    return values


def render_prompt(
    templates: Mapping[str, str], declared: Mapping[str, Mapping[str, object]], given: Mapping[str, object]
) -> dict[str, str]:
    """Each template (`{"system": ..., "user": ...}`) rendered with the checked variables
    (`resolve_variables`). A placeholder of an optional variable given no value and no
    default renders as nothing."""
    values = resolve_variables(declared, given)
    filled: dict[str, Value] = {name: "" for name in declared if name not in values}
    filled.update(values)
    return {key: render(template, filled) for key, template in templates.items()}
