"""Targeting-rule evaluation. Its one definition lives in the SDK (`agent_variants.rules`),
so the service and every client pick the same rule; re-exported here for the service."""

from agent_variants.rules import (
    ATTRIBUTE_MAX_LENGTH,
    ATTRIBUTE_PATTERN,
    MAX_ATTRIBUTES,
    NUMERIC_STRING,
    OPS,
    SUBJECT,
    VALUE_MAX_LENGTH,
    Condition,
    Op,
    Rule,
    Scalar,
    attribute_errors,
    context_attributes,
    first_match,
    is_numeric_string,
)

__all__ = [
    "ATTRIBUTE_MAX_LENGTH",
    "ATTRIBUTE_PATTERN",
    "MAX_ATTRIBUTES",
    "NUMERIC_STRING",
    "OPS",
    "SUBJECT",
    "VALUE_MAX_LENGTH",
    "Op",
    "Condition",
    "Rule",
    "Scalar",
    "attribute_errors",
    "context_attributes",
    "first_match",
    "is_numeric_string",
]
