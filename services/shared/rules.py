"""Targeting-rule evaluation. Its one definition lives in the SDK (`agent_variants.rules`),
so the service and every client pick the same rule; re-exported here for the service."""

from agent_variants.rules import (
    NUMERIC_STRING,
    OPS,
    SUBJECT,
    Condition,
    Op,
    Rule,
    Scalar,
    context_attributes,
    first_match,
    is_numeric_string,
)

__all__ = [
    "NUMERIC_STRING",
    "OPS",
    "SUBJECT",
    "Op",
    "Condition",
    "Rule",
    "Scalar",
    "context_attributes",
    "first_match",
    "is_numeric_string",
]
