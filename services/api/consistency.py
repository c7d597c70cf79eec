"""The cross-field rule, applied before anything is written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.api.exceptions import FieldError, InconsistentConfig
from services.shared.agent_config import CONSISTENCY_FIELDS, coalesce, consistency_violation


def check_resolved(base: Mapping[str, Any], *, overrides: Mapping[str, Any], subject: str = "config") -> None:
    """Raise `InconsistentConfig` when `overrides` over `base` breaks the rule.

    Each involved field is named where its resolved value comes from: `overrides.<field>`
    when the variant sets it, else `config.<field>` (the agent's base config).
    """
    resolved = coalesce(overrides, base)
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
