"""`POST .../render`: a resolved config's prompts rendered with the caller's variables, by
the one implementation the SDKs' `config.render(**variables)` use (`templates.render_prompt`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.api.db import Database
from services.api.exceptions import (
    DomainError,
    FieldError,
    InvalidTemplate,
    MissingVariable,
    UnknownVariable,
    ValidationFailed,
)
from services.api.resolution import plan
from services.api.resolution.cache import ResolveCache
from services.api.resolution.schemas import to_body
from services.shared.agent_config import ResolvedAgentConfig, resolve_agent_config
from services.shared.templates import RenderError, TemplateError, render_prompt

_REFUSALS: dict[str, type[DomainError]] = {
    "missing_variable": MissingVariable,
    "unknown_variable": UnknownVariable,
    "validation_error": ValidationFailed,
}


async def resolved_for(
    db: Database,
    cache: ResolveCache | None,
    agent: str,
    *,
    environment: str,
    variant: str | None,
    subject: str | None,
    attributes: Mapping[str, Any],
) -> ResolvedAgentConfig:
    """The config a render starts from: the preview of `variant`, else what the context gets
    in the environment (from the cached plan when there is one, as `POST .../resolve`)."""
    if variant is not None:
        async with db.read() as conn:
            return await resolve_agent_config(conn, agent, variant=variant, environment=environment)
    if subject is None and not attributes:
        async with db.driver_read() as driver:
            return await resolve_agent_config(driver, agent, environment=environment)
    entry = cache.get_context(agent, environment, False) if cache is not None else None
    found = entry.plan if entry is not None else None
    if found is None:
        async with db.read() as conn:
            found = await plan.build(conn, agent, environment)
    return found.configs[found.pick(subject, attributes)]


def rendered(config: ResolvedAgentConfig, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The `rendered_prompt` object. A refusal names every bad variable (`variables.<name>`):
    422 `missing_variable`, `unknown_variable` or `validation_error`, the first kind found."""
    templates = {"system": config.system_prompt, "user": config.user_prompt_template}
    try:
        prompts = render_prompt(templates, config.variables, variables)
    except RenderError as error:
        errors = [FieldError(param, message) for param, message in error.errors]
        raise _REFUSALS[error.code](f"Cannot render the prompts: {error}", errors=errors) from None
    except TemplateError as error:  # stored before templates were checked: say which one
        raise InvalidTemplate(f"The served config's template is invalid: {error}") from None
    return {"object": "rendered_prompt", "config": to_body(config, explain=False), **prompts}
