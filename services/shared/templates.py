"""Prompt templates: their placeholders and their rendering. The one definition lives in the
SDK (`agent_variants.templates`), so the service and every client read and render a
template alike; re-exported here for the service."""

from agent_variants.templates import (
    VARIABLE_NAME,
    VARIABLE_TYPES,
    Placeholder,
    RenderError,
    TemplateError,
    Value,
    is_variable_name,
    number_text,
    placeholders,
    render,
    render_prompt,
    resolve_variables,
    type_error,
    value_text,
    variable_names,
)

__all__ = [
    "VARIABLE_NAME",
    "VARIABLE_TYPES",
    "Placeholder",
    "RenderError",
    "TemplateError",
    "Value",
    "is_variable_name",
    "number_text",
    "placeholders",
    "render",
    "render_prompt",
    "resolve_variables",
    "type_error",
    "value_text",
    "variable_names",
]
