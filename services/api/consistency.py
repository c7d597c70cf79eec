"""The checks a servable config must pass, applied before anything is written: its
templates' placeholders, then the cross-field rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.api.exceptions import FieldError, InconsistentConfig, InvalidTemplate
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
