"""The conformance cases (sdk/conformance/cases.json) every SDK must pass, run here against
the Python SDK and against the service's own functions; and the file is what the generator
writes now (a change of semantics shows as a change of the file, reviewed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import agent_variants.assignment as sdk_assignment
import agent_variants.bundles as sdk_bundles
import agent_variants.config as sdk_config
import agent_variants.rules as sdk_rules
import agent_variants.templates as sdk_templates
import pytest

from services.shared import agent_config as service_config
from services.shared import assignment as service_assignment
from services.shared import rules as service_rules
from services.shared import templates as service_templates

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "sdk" / "conformance" / "cases.json").read_text())
SIDES = {
    "sdk": (sdk_assignment, sdk_rules, sdk_config, sdk_templates),
    "service": (service_assignment, service_rules, service_config, service_templates),
}


def test_the_cases_are_what_the_generator_writes() -> None:
    generator = ROOT / "sdk" / "conformance" / "generate.py"
    run = subprocess.run([sys.executable, str(generator), "--check"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("side", sorted(SIDES))
def test_assignment(side: str) -> None:
    assignment = SIDES[side][0]
    for case in CASES["assignment"]["experiments"]:
        assert assignment.bucket(case["salt"], case["subject"]) == case["bucket"], case
        assert assignment.assign(case["salt"], case["subject"], case["weights"]) == case["arm"], case
    for case in CASES["assignment"]["rollouts"]:
        for percent, arm in case["arms"].items():
            assert assignment.rollout_arm(case["salt"], case["subject"], int(percent)) == arm, case


@pytest.mark.parametrize("side", sorted(SIDES))
def test_rules(side: str) -> None:
    rules = SIDES[side][1]
    for case in CASES["rules"]:
        found = rules.first_match(case["rules"], subject=case["subject"], attributes=case["attributes"])
        assert (found["id"] if found else None) == case["match"], case


@pytest.mark.parametrize("side", ["service"])
def test_the_resolution_order(side: str) -> None:
    config = SIDES[side][2]
    for case in CASES["order"]:
        split = case["split"]
        kind, chosen = config.choose(
            case["rules"],
            (split["salt"], split["weights"]) if split else None,
            subject=case["subject"],
            attributes=case["attributes"],
        )
        got: dict[str, Any] = {"kind": "split" if kind == "experiment" else kind}
        if kind == "rule":
            got["rule_id"] = chosen["id"]
        elif kind == "experiment":
            got["arm"] = chosen
        assert got == case["expected"], case


def served_config(variant_id: str | None) -> dict[str, Any]:
    """A `resolved_agent_config` object whose variant id says what served it."""
    return {
        "agent_id": "agt_1",
        "variant_id": variant_id,
        **sdk_config.DEFAULTS,
        "model_provider": "p",
        "model_name": "m",
    }


def test_the_python_sdk_resolves_a_bundle_in_the_same_order() -> None:
    """The order cases through the SDK's own path: a bundle (rules, a running experiment)
    read by `Local.of`, answered by `resolve_locally`."""
    for case in CASES["order"]:
        split = case["split"]
        bundle: dict[str, Any] = {
            "etag": "e1",
            "environment": "production",
            "resolved": served_config(None),
            "rules": [{**rule, "resolved": served_config(f"rule:{rule['id']}")} for rule in case["rules"]],
        }
        if split:
            arms = [
                {"arm": n, "weight": weight, "resolved": served_config(f"arm:{n}")}
                for n, weight in enumerate(split["weights"])
            ]
            bundle["experiment"] = {"id": "exp_1", "salt": split["salt"], "status": "running", "arms": arms}
        local = sdk_bundles.Local.of(bundle, sdk_bundles.Freshness())
        config = sdk_bundles.resolve_locally(local, case["subject"], case["attributes"])
        if config.source == "rule":
            got: dict[str, Any] = {"kind": "rule", "rule_id": config.rule_id}
            assert config.variant_id == f"rule:{config.rule_id}", case
        elif config.source == "experiment":
            got = {"kind": "split", "arm": config.arm}
            assert config.variant_id == f"arm:{config.arm}", case
        else:
            got = {"kind": "plain"}
            assert config.variant_id is None, case
        assert got == case["expected"], case


@pytest.mark.parametrize("side", sorted(SIDES))
def test_coalescing(side: str) -> None:
    config = SIDES[side][2]
    for case in CASES["coalescing"]:
        keyed, given = config.coalesce_keyed(case["overrides"], case["base"])
        assert {**config.coalesce(case["overrides"], case["base"]), **keyed} == case["resolved"], case
        twelve = {name for name in case["overrides"] if name in config.CONFIG_FIELDS}
        assert sorted(twelve | given) == case["overridden"], case


@pytest.mark.parametrize("side", sorted(SIDES))
def test_templates(side: str) -> None:
    templates = SIDES[side][3]
    for case in CASES["templates"]["numbers"]:
        assert templates.number_text(case["value"]) == case["text"], case
    for case in CASES["templates"]["placeholders"]:
        if "error" in case:
            with pytest.raises(templates.TemplateError) as raised:
                templates.placeholders(case["template"])
            assert raised.value.position == case["position"], case
        else:
            assert [p.name for p in templates.placeholders(case["template"])] == case["placeholders"], case
    for case in CASES["templates"]["render"]:
        if "error" in case:
            with pytest.raises(templates.RenderError) as refused:
                templates.render_prompt(case["templates"], case["declared"], case["variables"])
            assert refused.value.code == case["error"], case
            named = sorted(({"param": p, "message": m} for p, m in refused.value.errors), key=lambda e: e["param"])
            assert named == case["errors"], case
        else:
            assert (
                templates.render_prompt(case["templates"], case["declared"], case["variables"]) == case["rendered"]
            ), case
