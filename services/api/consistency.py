"""The checks a servable config must pass, applied before anything is written: its
templates' placeholders, then the cross-field rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.exceptions import FieldError, InconsistentConfig, InvalidTemplate, ModelLimit
from services.api.models import Model, table_of
from services.shared.agent_config import CONSISTENCY_FIELDS, coalesce, consistency_violation
from services.shared.templates import TemplateError, placeholders

# The fields that are templates (contract 1.1, "Templates").
TEMPLATE_FIELDS = ("system_prompt", "user_prompt_template")


def check_resolved(base: Mapping[str, Any], *, overrides: Mapping[str, Any], subject: str = "config") -> None:
    """Raise `InconsistentConfig` when `overrides` over `base` breaks the rule.

    Each involved field is named where its resolved value comes from: `overrides.<field>`
    when the variant sets it, else `config.<field>` (the agent's base config).

    First, each template must hold only valid placeholders (`InvalidTemplate`, 422
    `invalid_template`, naming every bad field).
    """
    resolved = coalesce(overrides, base)
    bad = []
    for name in TEMPLATE_FIELDS:
        try:
            placeholders(resolved[name])
        except TemplateError as error:
            bad.append(
                FieldError(f"overrides.{name}" if overrides.get(name) is not None else f"config.{name}", str(error))
            )
    if bad:
        raise InvalidTemplate("; ".join(f"{error.param}: {error.message}" for error in bad), errors=bad)
    violation = consistency_violation(resolved)
    if violation is None:
        return
    errors = [
        FieldError(
            f"overrides.{name}" if overrides.get(name) is not None else f"config.{name}",
            violation,
        )
        for name in CONSISTENCY_FIELDS
    ]
    raise InconsistentConfig(
        f"The resolved {subject} breaks the rule input_token_limit + max_tokens <= context_window: {violation}",
        errors=errors,
    )


# Contract 1.1, "Models": a catalogued model's limits, checked on the same writes.
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
