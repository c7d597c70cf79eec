"""The create schema of `POST .../experiments` states what the model's kind check refuses:
a rollout needs `variant` and `steps` and takes no `arms`; an experiment needs `arms` and
takes no rollout field. Every combination of the four fields (absent, null, or a valid
value) is accepted by the JSON Schema exactly when the model accepts it."""

from __future__ import annotations

import itertools
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from services.api.experiments.schemas import ExperimentCreate

ABSENT = object()
VALUES: dict[str, list[Any]] = {
    "kind": [ABSENT, "experiment", "rollout"],
    "arms": [ABSENT, None, [{"variant": "base", "weight": 1}, {"variant": "b", "weight": 1}]],
    "variant": [ABSENT, None, "concise"],
    "steps": [ABSENT, None, [{"percent": 100, "hold_seconds": 0}]],
    "guardrails": [ABSENT, None],
    "min_outcomes": [ABSENT, None, 50],
}
BODIES = [
    {"name": "e", **{field: value for field, value in zip(VALUES, combo, strict=True) if value is not ABSENT}}
    for combo in itertools.product(*VALUES.values())
]


def accepted_by_model(body: dict[str, Any]) -> bool:
    try:
        ExperimentCreate.model_validate(body)
    except ValidationError:
        return False
    return True


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = ExperimentCreate.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_accepts_what_the_model_accepts(validator: jsonschema.Draft202012Validator) -> None:
    verdicts = [(body, validator.is_valid(body), accepted_by_model(body)) for body in BODIES]
    disagree = [(body, schema, model) for body, schema, model in verdicts if schema != model]
    assert not disagree, disagree[:5]
    # Both answers come up, for both kinds.
    assert {(body.get("kind", "experiment"), model) for body, _, model in verdicts} == {
        ("experiment", True),
        ("experiment", False),
        ("rollout", True),
        ("rollout", False),
    }
