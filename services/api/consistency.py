"""The checks a servable config must pass, applied before anything is written: its keyed
fields' limits and schemas, its templates' placeholders and their declared variables, its
params against the agent's `params_schema`, then the cross-field rule; and, reading the
model catalog in the write's transaction, the catalogued model's limits."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.exceptions import (
    DomainError,
    FieldError,
    InconsistentConfig,
    InvalidSchema,
    InvalidTemplate,
    ModelLimit,
    UndeclaredVariable,
    ValidationFailed,
)
from services.api.keyed_fields import params_size_error
from services.api.models import Model, table_of
from services.shared.agent_config import CONSISTENCY_FIELDS, TOOLS_MAX, coalesce, coalesce_keyed, consistency_violation
from services.shared.templates import TemplateError, placeholders

# The fields that are templates (contract 1.1, "Templates").
TEMPLATE_FIELDS = ("system_prompt", "user_prompt_template")
# The meta-schema with its format checker on: a `pattern` that is no regular expression is
# refused when written, not met as an error when params are checked.
_META = Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
# No retrieval: a `$ref` to a URL is unresolvable (never fetched), whoever wrote it.
_NO_RETRIEVAL = Registry()
MAX_SCHEMA_DEPTH = 32


def _path(prefix: str, parts: Iterable[Any]) -> str:
    out = prefix
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _depth(value: Any, limit: int) -> bool:
    """Whether a JSON value nests deeper than `limit` (without recursing)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return False


def schema_errors(schema: Mapping[str, Any], *, param: str) -> list[FieldError]:
    """Why `schema` is not a valid JSON Schema (draft 2020-12), each error named by its path
    inside the schema (`tools.search.parameters.properties.q.type`); none when it is. Regular
    expressions must compile, and schemas nest at most 32 levels."""
    if _depth(schema, MAX_SCHEMA_DEPTH):
        return [FieldError(param, f"nests deeper than {MAX_SCHEMA_DEPTH} levels")]
    try:
        found = sorted(_META.iter_errors(schema), key=lambda error: list(map(str, error.absolute_path)))
    except (RecursionError, re.error) as error:
        return [FieldError(param, f"cannot be checked: {error}")]
    return [FieldError(_path(param, error.absolute_path), error.message) for error in found]


def _raise(kind: type[DomainError], errors: list[FieldError], what: str) -> None:
    if errors:
        raise kind(f"{what}: " + "; ".join(f"{error.param}: {error.message}" for error in errors), errors=errors)


def check_params_schema(schema: Mapping[str, Any] | None) -> None:
    """An agent's `params_schema` must be a valid JSON Schema (422 `invalid_schema`)."""
    if schema is not None:
        _raise(InvalidSchema, schema_errors(schema, param="params_schema"), "Invalid params_schema")


def _params_errors(
    params: Mapping[str, Any], schema: Mapping[str, Any], *, where: Mapping[str, str]
) -> list[FieldError]:
    """Where resolved `params` break the agent's `params_schema`; `where` names, per param,
    the side that gave it (`config` or `overrides`)."""
    errors = []
    try:
        validator = Draft202012Validator(schema, registry=_NO_RETRIEVAL)
        found = sorted(validator.iter_errors(dict(params)), key=lambda e: list(map(str, e.path)))
    except Unresolvable as unresolvable:  # a $ref the schema cannot resolve: no network is ever asked
        return [FieldError("params_schema", f"cannot resolve a $ref: {unresolvable}")]
    except (RecursionError, re.error) as broken:  # a $ref to itself; a pattern no regex compiles
        return [FieldError("params_schema", f"cannot be applied: {broken}")]
    for error in found:
        path = list(error.absolute_path)
        side = where.get(str(path[0]), "config") if path else "config"
        errors.append(FieldError(_path(f"{side}.params", path), _schema_message(error)))
    return errors


def _schema_message(error: ValidationError) -> str:
    return f"{error.message} (params_schema: {'/'.join(map(str, error.absolute_schema_path))})"


def check_resolved(
    base: Mapping[str, Any],
    *,
    overrides: Mapping[str, Any],
    subject: str = "config",
    params_schema: Mapping[str, Any] | None = None,
) -> None:
    """Raise when `overrides` over `base` (the agent's config) is not servable, naming each
    field where its resolved value comes from: `overrides.<field>` when the variant sets it,
    else `config.<field>` (the agent's base config). In order, each failing with every bad
    field named:

    1. the keyed fields' limits (`validation_error`) and each tool's `parameters` a valid
       JSON Schema (`invalid_schema`);
    2. each template holds only valid placeholders (`invalid_template`);
    3. every placeholder is a declared variable (`undeclared_variable`);
    4. the resolved `params` satisfy the agent's `params_schema` (`validation_error`);
    5. the cross-field rule (`inconsistent_config`).
    """

    def side(name: str) -> str:
        return "overrides" if overrides.get(name) is not None else "config"

    resolved = coalesce(overrides, base)
    keyed, given = coalesce_keyed(overrides, base)

    too_big = []
    for where, params in (("config", base.get("params") or {}), ("overrides", overrides.get("params") or {})):
        problem = params_size_error(params)
        if problem is not None:
            too_big.append(FieldError(f"{where}.params", problem))
    problem = params_size_error(keyed["params"])
    if problem is not None and not too_big:
        too_big.append(FieldError("overrides.params", f"resolved with the base's: {problem}"))
    if len(keyed["tools"]) > TOOLS_MAX:
        where = "overrides.tools" if overrides.get("tools") else "config.tools"
        too_big.append(FieldError(where, f"at most {TOOLS_MAX} tools (resolved: {len(keyed['tools'])})"))
    _raise(ValidationFailed, too_big, f"Invalid {subject}")

    bad_schemas = []
    for name, tool in keyed["tools"].items():
        where = "overrides" if f"tools.{name}" in given else "config"
        bad_schemas += schema_errors(tool["parameters"], param=f"{where}.tools.{name}.parameters")
    _raise(InvalidSchema, bad_schemas, f"Invalid tool parameters in the {subject}")

    bad_templates, undeclared = [], []
    for name in TEMPLATE_FIELDS:
        try:
            found = placeholders(resolved[name])
        except TemplateError as error:
            bad_templates.append(FieldError(f"{side(name)}.{name}", str(error)))
            continue
        for variable in dict.fromkeys(placeholder.name for placeholder in found):
            if variable not in keyed["variables"]:
                undeclared.append(
                    FieldError(
                        f"{side(name)}.{name}",
                        f"'{{{{{variable}}}}}' uses the variable '{variable}', which is not declared in variables",
                    )
                )
    _raise(InvalidTemplate, bad_templates, f"Invalid template in the {subject}")
    _raise(UndeclaredVariable, undeclared, f"Undeclared template variable in the {subject}")

    if params_schema is not None:
        sides = {key.removeprefix("params."): "overrides" for key in given if key.startswith("params.")}
        _raise(
            ValidationFailed,
            _params_errors(keyed["params"], params_schema, where=sides),
            f"The resolved params of the {subject} break the agent's params_schema",
        )

    violation = consistency_violation(resolved)
    if violation is None:
        return
    errors = [FieldError(f"{side(name)}.{name}", violation) for name in CONSISTENCY_FIELDS]
    raise InconsistentConfig(
        f"The resolved {subject} breaks the rule input_token_limit + max_tokens <= context_window: {violation}",
        errors=errors,
    )


Checked = tuple[Mapping[str, Any], Mapping[str, Any], str]  # (base, overrides, subject) as check_resolved takes them


async def check_model_limits(conn: AsyncConnection, configs: Iterable[Checked]) -> None:
    """Raise when a resolved config breaks its catalogued model's limits: `max_tokens` above
    the model's `max_output_tokens` is `ModelLimit` (422 `model_limit`); with the config's
    `context_window` 0, the token rule uses the catalog's (`InconsistentConfig`). Fields are
    named as `check_resolved` names them. Models not in the catalog pass unchecked.

    Run after `check_resolved`, on the write's own connection: the catalog rows are read in
    its transaction, FOR SHARE, so a concurrent change of the model waits for the write."""
    resolved = [(coalesce(overrides, base), overrides, subject) for base, overrides, subject in configs]
    pairs = {(config["model_provider"], config["model_name"]) for config, _, _ in resolved}
    if not pairs:
        return
    models = table_of(Model)
    rows = await conn.execute(
        select(models.c.provider, models.c.name, models.c.context_window, models.c.max_output_tokens)
        .where(tuple_(models.c.provider, models.c.name).in_(sorted(pairs)))
        .with_for_update(read=True)
    )
    catalog = {(row.provider, row.name): row for row in rows}
    for config, overrides, subject in resolved:
        model = catalog.get((config["model_provider"], config["model_name"]))
        if model is None:
            continue
        named = f"{model.provider}/{model.name}"

        def param(name: str, overrides: Mapping[str, Any] = overrides) -> str:
            return f"overrides.{name}" if overrides.get(name) is not None else f"config.{name}"

        if model.max_output_tokens is not None and config["max_tokens"] > model.max_output_tokens:
            message = (
                f"max_tokens ({config['max_tokens']}) exceeds the max_output_tokens of {named} in the model "
                f"catalog ({model.max_output_tokens})"
            )
            raise ModelLimit(
                f"The resolved {subject} is over its model's limit: {message}",
                errors=[FieldError(param("max_tokens"), message)],
            )
        if config["context_window"] == 0 and model.context_window is not None:
            violation = consistency_violation({**config, "context_window": model.context_window})
            if violation is not None:
                message = f"{violation}, the context_window of {named} in the model catalog"
                raise InconsistentConfig(
                    f"The resolved {subject} breaks the rule input_token_limit + max_tokens <= context_window: "
                    f"{message}",
                    errors=[FieldError(param(name), message) for name in CONSISTENCY_FIELDS],
                )
