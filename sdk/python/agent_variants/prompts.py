"""A resolved config's prompt, rendered: `config.render(**variables)` (contract 1.1, **Render**).

One implementation, `templates.render_prompt`, shared with the service's `POST .../render`;
this module only turns its refusals into the SDK's errors (`RenderFailed`, a
`ValidationFailed`), so code that catches the service's 422s handles a local render alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_variants.errors import RenderFailed
from agent_variants.templates import RenderError, TemplateError, placeholders, render_prompt

# The problem types and titles of the service's answers (its errors.py); a local refusal reads the same.
_TYPE_BASE = "https://agent-variants.dev/problems/"
_TITLES = {
    "missing_variable": "Missing template variable",
    "unknown_variable": "Unknown template variable",
    "validation_error": "Invalid request",
    "invalid_template": "Invalid template",
    "undeclared_variable": "Undeclared template variable",
}


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """Both templates of a config rendered: `system` (from `system_prompt`) and `user`
    (from `user_prompt_template`). Either may be empty."""

    system: str
    user: str


def render_templates(
    system_prompt: str,
    user_prompt_template: str,
    declared: Mapping[str, Mapping[str, Any]],
    given: Mapping[str, object],
) -> RenderedPrompt:
    """Both templates rendered with the `given` values checked against the `declared`
    variables (`templates.render_prompt`). Raises `RenderFailed`.

    A config the service serves has valid templates whose placeholders are all declared;
    one that does not (built by hand, or from a service older than contract 1.1, which
    declares no variables) is refused first, naming the field: `invalid_template` or
    `undeclared_variable`, as the service refuses such a write."""
    invalid: list[tuple[str, str]] = []
    undeclared: list[tuple[str, str]] = []
    for field, template in (("system_prompt", system_prompt), ("user_prompt_template", user_prompt_template)):
        try:
            names = dict.fromkeys(placeholder.name for placeholder in placeholders(template))
        except TemplateError as error:
            invalid.append((field, str(error)))
            continue
        unknown = [name for name in names if name not in declared]
        undeclared.extend((field, f"'{{{{{name}}}}}' is not a declared variable") for name in unknown)
    if invalid or undeclared:
        raise _failed("invalid_template" if invalid else "undeclared_variable", invalid + undeclared)
    try:
        rendered = render_prompt({"system": system_prompt, "user": user_prompt_template}, declared, given)
    except RenderError as error:
        raise _failed(error.code, error.errors) from None
    return RenderedPrompt(system=rendered["system"], user=rendered["user"])


def _failed(code: str, errors: list[tuple[str, str]]) -> RenderFailed:
    """The error, with the problem+json body the service would answer."""
    detail = "; ".join(f"{param}: {message}" for param, message in errors)
    problem = {
        "type": _TYPE_BASE + code,
        "title": _TITLES[code],
        "status": 422,
        "detail": detail,
        "code": code,
        "errors": [{"param": param, "message": message} for param, message in errors],
    }
    return RenderFailed(detail, status=422, problem=problem)
