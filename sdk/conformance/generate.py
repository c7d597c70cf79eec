"""Write sdk/conformance/cases.json: inputs and the expected outputs, computed by the
service's own functions (the SDK's `agent_variants`, which the service re-exports).

    .venv/bin/python sdk/conformance/generate.py          # rewrite cases.json
    .venv/bin/python sdk/conformance/generate.py --check  # exit 1 when cases.json is stale

Seeded: the same code writes the same file. Review a change of cases.json as a change of
the semantics every SDK must follow (tests/sdk/test_conformance.py runs every case against
the Python SDK and the service's functions).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from agent_variants.assignment import assign, bucket, rollout_arm
from agent_variants.config import coalesce, coalesce_keyed
from agent_variants.rules import OPS, first_match
from agent_variants.templates import RenderError, TemplateError, number_text, placeholders, render_prompt

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases.json"
VERSION = 1


def assignment(rng: random.Random) -> dict[str, Any]:
    experiments = []
    for n in range(60):
        salt = rng.choice(["exp_01JDQ40B2D4F6H8K0M2P4R6T8V", f"salt-{n}", "é ü 漢字", ""])
        weights = rng.choice([[1, 1], [1, 3], [5000, 5000], [1, 1, 1], [7, 0, 3], [1, 2, 3, 4], [10_000, 1]])
        subject = rng.choice([f"user-{rng.getrandbits(32)}", "", "ümlaut", "a:b:c", "42"])
        experiments.append(
            {
                "salt": salt,
                "subject": subject,
                "weights": weights,
                "bucket": bucket(salt, subject),
                "arm": assign(salt, subject, weights),
            }
        )
    rollouts = []
    for n in range(40):
        salt, subject = f"rollout-{n}", f"u{rng.getrandbits(24)}"
        percents = [1, 5, 25, 50, 99, 100]
        rollouts.append(
            {"salt": salt, "subject": subject, "arms": {str(p): rollout_arm(salt, subject, p) for p in percents}}
        )
    return {"experiments": experiments, "rollouts": rollouts}


def rules(rng: random.Random) -> list[dict[str, Any]]:
    values: list[Any] = ["pro", "Pro", "40", "4e1", "-0", "", 40, 40.0, 39.5, True, False, 0, "eu-west"]
    cases = []
    for n in range(150):
        conditions = []
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(OPS)
            condition: dict[str, Any] = {
                "attribute": rng.choice(["plan", "seats", "region", "beta", "subject"]),
                "op": op,
            }
            if op in ("in", "not_in"):
                condition["values"] = rng.sample(values, rng.randint(1, 3))
            elif op not in ("exists", "not_exists"):
                condition["value"] = rng.choice(values)
            conditions.append(condition)
        rule_set = [
            {"id": f"rul_{n}_a", "name": "a", "when": conditions, "serve": {"variant": "base"}},
            {
                "id": f"rul_{n}_b",
                "name": "b",
                "when": [{"attribute": "plan", "op": "exists"}],
                "serve": {"variant": "base"},
            },
        ]
        attributes = {
            name: rng.choice(values) for name in rng.sample(["plan", "seats", "region", "beta"], rng.randint(0, 3))
        }
        subject = rng.choice([None, "user-1", "40"])
        found = first_match(rule_set, subject=subject, attributes=attributes)
        cases.append(
            {"rules": rule_set, "subject": subject, "attributes": attributes, "match": found["id"] if found else None}
        )
    return cases


def order(rng: random.Random) -> list[dict[str, Any]]:
    """The resolution order: the first rule that holds, else the subject's arm of the split,
    else the plain resolution (`services.shared.agent_config.choose`)."""
    cases = []
    for n in range(40):
        rule_set = [
            {
                "id": "rul_pro",
                "name": "pro",
                "when": [{"attribute": "plan", "op": "eq", "value": "pro"}],
                "serve": {"variant": "base"},
            }
        ]
        split = rng.choice([None, {"salt": f"s{n}", "weights": [1, 1]}])
        subject = rng.choice([None, f"user-{n}"])
        attributes = rng.choice([{}, {"plan": "pro"}, {"plan": "free"}])
        rule = first_match(rule_set, subject=subject, attributes=attributes)
        if rule is not None:
            expected: dict[str, Any] = {"kind": "rule", "rule_id": rule["id"]}
        elif subject is not None and split is not None:
            expected = {"kind": "split", "arm": assign(split["salt"], subject, split["weights"])}
        else:
            expected = {"kind": "plain"}
        cases.append(
            {"rules": rule_set, "split": split, "subject": subject, "attributes": attributes, "expected": expected}
        )
    return cases


BASE = {
    "model_provider": "openai",
    "model_name": "gpt-4o",
    "system_prompt": "Be helpful.",
    "user_prompt_template": "{{question}}",
    "prompt_version": "v1",
    "temperature": 0.7,
    "max_tokens": 1024,
    "context_window": 0,
    "input_token_limit": 0,
    "token_budget": 0,
    "timeout_seconds": 60,
    "max_retries": 2,
    "params": {"top_p": 0.9, "seed": 7},
    "tools": {
        "search": {"description": "Search.", "parameters": {"type": "object"}},
        "lookup": {"description": "", "parameters": {}},
    },
    "variables": {"question": {"type": "string"}},
}


def coalescing(rng: random.Random) -> list[dict[str, Any]]:
    options: list[dict[str, Any]] = [
        {},
        {"temperature": 0.2, "max_tokens": 300},
        {"params": {"seed": 8, "reasoning_effort": "high"}, "params_unset": ["top_p"]},
        {"params_unset": ["seed"], "params": {"seed": 1}},
        {
            "tools": {
                "lookup": {"disabled": True},
                "refund": {"description": "Refund.", "parameters": {"type": "object"}},
            }
        },
        {"tools": {"search": {"description": "FAQ only.", "parameters": {"type": "object"}, "strict": True}}},
        {"variables": {"tone": {"type": "string", "default": "kind"}}, "system_prompt": "Be {{tone}}."},
        {"model_name": "gpt-4o-mini", "params": {"top_p": 0.5}, "tools": {"missing": {"disabled": True}}},
    ]
    cases = []
    for overrides in options:
        keyed, given = coalesce_keyed(overrides, BASE)
        cases.append(
            {
                "base": BASE,
                "overrides": overrides,
                "resolved": {**coalesce(overrides, BASE), **keyed},
                "overridden": sorted(
                    {name for name in overrides if name in BASE and not isinstance(BASE[name], dict)} | given
                ),
            }
        )
    return cases


def templates(rng: random.Random) -> dict[str, Any]:
    numbers = [0, 1, -1, 0.5, 1e-7, 1e21, 1.5e21, 123456789012345680000, 0.1 + 0.2, -0.0, 2**53 + 1, 1e-6, 100, 1e300]
    number_cases = [{"value": value, "text": number_text(value)} for value in numbers]
    invalid = ["{{a.b}}", "{{ 0 }}", "{{}}", "{{{name}}}", "{{\tx}}", "{{" + "a" * 65 + "}}"]
    valid = ['{"a": {"b": 1}}', "{{ name }} and {{name}}", "single {braces}", "{{ open", "}} {{x}}"]
    parse_cases = []
    for template in invalid + valid:
        try:
            parse_cases.append({"template": template, "placeholders": [p.name for p in placeholders(template)]})
        except TemplateError as error:
            parse_cases.append({"template": template, "error": "invalid_template", "position": error.position})
    declared = {
        "name": {"type": "string"},
        "n": {"type": "integer"},
        "x": {"type": "number", "default": 0.5},
        "ok": {"type": "boolean", "required": False},
    }
    givens: list[dict[str, Any]] = [
        {"name": "Ada", "n": 40},
        {"name": "Ada", "n": 40.0, "x": 1e-7, "ok": True},
        {"n": 1},
        {"name": "Ada", "n": "40"},
        {"name": "Ada", "n": 1.5},
        {"name": 1, "n": 1, "other": 2},
        {"name": "Ada", "n": 1, "ok": "yes"},
        {},
    ]
    render_cases = []
    for given in givens:
        prompts = {"system": 'Hi {{name}} ({{ n }}), x={{x}} ok={{ok}} {"json": true}', "user": "{{name}}"}
        try:
            render_cases.append(
                {
                    "templates": prompts,
                    "declared": declared,
                    "variables": given,
                    "rendered": render_prompt(prompts, declared, given),
                }
            )
        except RenderError as error:
            render_cases.append(
                {
                    "templates": prompts,
                    "declared": declared,
                    "variables": given,
                    "error": error.code,
                    # Every bad variable, in no particular order (compare them as a set).
                    "errors": sorted(
                        ({"param": param, "message": message} for param, message in error.errors),
                        key=lambda one: one["param"],
                    ),
                }
            )
    return {"numbers": number_cases, "placeholders": parse_cases, "render": render_cases}


def build() -> dict[str, Any]:
    rng = random.Random(20261206)
    return {
        "version": VERSION,
        "assignment": assignment(rng),
        "rules": rules(rng),
        "order": order(rng),
        "coalescing": coalescing(rng),
        "templates": templates(rng),
    }


def text() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        if CASES.read_text() != text():
            sys.exit("sdk/conformance/cases.json is stale: run sdk/conformance/generate.py")
    else:
        CASES.write_text(text())
