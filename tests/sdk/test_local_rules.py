"""Local resolution in the SDK (contract 1.1): targeting rules, splits (experiments and
rollouts) and environments, answered from hand-built bundles, with no server.

The bundles are served by `FakeService`, an `httpx.MockTransport` standing in for the
service, so `resolve()` runs exactly as it does against a real one: it fetches
`GET .../bundle?environment=`, keeps one copy and one watch per (agent, environment), and
resolves locally. A hypothesis property checks the client's answers against the contract's
order computed directly with `first_match` and the assignment formula.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from unittest import mock

import httpx
import pytest
from agent_variants import AgentVariants, AsyncAgentVariants, ResolvedAgentConfig, ValidationFailed, client, sync
from agent_variants.assignment import BUCKETS, assign, bucket
from agent_variants.bundles import Freshness, Local, answer
from agent_variants.config import CONFIG_FIELDS
from agent_variants.outcomes import outcome_of
from agent_variants.rules import OPS, first_match
from hypothesis import given, settings
from hypothesis import strategies as st

AGENT_ID = "agt_01JDQ42D4F6H8K0M2P4R6T8V0X"
EXPERIMENT_ID = "exp_01JDQ42D4F6H8K0M2P4R6T8V0Y"
URL = "http://agent-variants.test"


# ---------------------------------------------------------------------------------- bundles


def body(prompt: str, *, variant_id: str | None = None, environment: str | None = "production", **extra: Any) -> dict:
    """A `resolved_agent_config` as the service sends it; `prompt` tells configs apart."""
    config = {
        "model_provider": "openai",
        "model_name": "gpt-4o",
        "system_prompt": prompt,
        "user_prompt_template": "",
        "prompt_version": "",
        "temperature": 1.0,
        "max_tokens": 1024,
        "context_window": 0,
        "input_token_limit": 0,
        "token_budget": 0,
        "timeout_seconds": 60,
        "max_retries": 2,
    }
    return {
        "object": "resolved_agent_config",
        "agent_id": AGENT_ID,
        "agent_slug": "support-bot",
        "variant_id": variant_id,
        "variant_slug": None,
        "source": "variant" if variant_id else "agent",
        "experiment_id": None,
        "arm": None,
        "environment": environment,
        "rule_id": None,
        **config,
        "provenance": {name: "agent" for name in CONFIG_FIELDS},
        **extra,
    }


def rule(n: int, *when: dict[str, Any], environment: str = "production") -> dict[str, Any]:
    """Rule `n` of a 1.1 bundle: it serves the config whose prompt is `rule n`."""
    variant_id, rule_id = f"var_rule{n}", f"rul_{n}"
    return {
        "id": rule_id,
        "name": f"rule {n}",
        "when": list(when),
        "serve": {"variant": variant_id},
        "resolved": body(f"rule {n}", variant_id=variant_id, environment=environment, source="rule", rule_id=rule_id),
    }


def cond(attribute: str, op: str, value: Any = None, *, values: list[Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"attribute": attribute, "op": op}
    if value is not None:
        out["value"] = value
    if values is not None:
        out["values"] = values
    return out


def split(
    *weights: int, kind: str = "experiment", status: str = "running", percent: int | None = None, salt: str = "s"
) -> dict[str, Any]:
    """A bundle's `experiment`: arm i serves the config whose prompt is `arm i`."""
    experiment: dict[str, Any] = {
        "id": EXPERIMENT_ID,
        "salt": salt,
        "kind": kind,
        "status": status,
        "arms": [
            {
                "arm": i,
                "weight": w,
                "variant_id": f"var_arm{i}" if i else None,
                "resolved": body(f"arm {i}", variant_id=f"var_arm{i}" if i else None, source=kind, arm=i),
            }
            for i, w in enumerate(weights)
        ],
    }
    if percent is not None:
        experiment["percent"] = percent
    return experiment


def bundle(
    environment: str | None = "production",
    *,
    rules: list[dict[str, Any]] | None = None,
    experiment: dict[str, Any] | None = None,
    plain: str = "plain",
    etag: str = "e1",
) -> dict[str, Any]:
    """A 1.1 bundle (`environment=None`: a v1 bundle, without `environment` and `rules`)."""
    out: dict[str, Any] = {
        "object": "resolution_bundle",
        "agent_id": AGENT_ID,
        "agent_slug": "support-bot",
        "etag": etag,
        "resolved": body(plain, environment=environment or "production"),
        "experiment": experiment,
    }
    if environment is not None:
        out["environment"] = environment
        out["rules"] = rules or []
    return out


def local(b: dict[str, Any]) -> Local:
    return Local.of(b, Freshness())


def resolve_in(b: dict[str, Any], subject: str | None = None, /, **attributes: Any) -> ResolvedAgentConfig:
    """What `resolve` answers from this bundle (the function both clients call)."""
    return answer(local(b), subject, None, attributes)


# ---------------------------------------------------------------------- a stand-in service


class FakeService:
    """Serves bundles per environment (`None`: a request without `?environment=`), records
    every request, and holds each watch open until the test ends."""

    def __init__(self, bundles: Mapping[str | None, dict[str, Any]]) -> None:
        self.bundles = dict(bundles)
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)
        self.pushes: dict[str | None, asyncio.Queue[dict[str, Any]]] = {}

    def push(self, environment: str | None, new: dict[str, Any]) -> None:
        """A change: the bundle is `new`, and the environment's watch says so."""
        self.bundles[environment] = new
        self.pushes.setdefault(environment, asyncio.Queue()).put_nowait(new)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        environment = request.url.params.get("environment")
        found = self.bundles.get(environment)
        if found is None:
            problem = {"status": 404, "code": "resource_missing", "param": "environment", "detail": "no such"}
            return httpx.Response(404, json=problem, headers={"content-type": "application/problem+json"})
        if request.url.path.endswith("/bundle/watch"):
            pushes = self.pushes.setdefault(environment, asyncio.Queue())
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_stream(pushes))
        if request.url.path.endswith("/bundle"):
            return httpx.Response(200, json=found, headers={"etag": f'"{found["etag"]}"'})
        if request.url.path.endswith("/outcomes"):
            accepted = len(json.loads(request.content)["data"])
            return httpx.Response(202, json={"object": "outcome_batch", "accepted": accepted})
        return httpx.Response(404, json={"status": 404, "code": "not_found"})

    def paths(self, kind: str) -> list[str]:
        """The `?environment=` of each request to `.../{kind}` (None: not given)."""
        return [r.url.params.get("environment") for r in self.requests if r.url.path.endswith(kind)]

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """SDK clients made meanwhile talk to this service."""
        real = client.http_options

        def options(*args: Any) -> dict[str, Any]:
            return {**real(*args), "transport": self.transport}

        with mock.patch.object(client, "http_options", options), mock.patch.object(sync, "http_options", options):
            yield


async def _stream(pushes: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[bytes]:
    """A watch: alive, then each pushed bundle, until the client goes away."""
    yield b": keepalive\n\n"
    while True:
        pushed = await pushes.get()
        yield f"event: bundle\nid: {pushed['etag']}\ndata: {json.dumps(pushed)}\n\n".encode()


# ------------------------------------------------------------------------------- rule order


def test_the_first_rule_that_holds_serves_with_its_id_and_the_environment() -> None:
    b = bundle(
        "staging",
        rules=[
            rule(1, cond("plan", "eq", "enterprise"), environment="staging"),
            rule(2, cond("plan", "in", values=["pro", "enterprise"]), environment="staging"),
            rule(3, cond("seats", "gte", 10), environment="staging"),
        ],
    )
    pro = resolve_in(b, plan="pro", seats=40)  # rules 2 and 3 hold: the first of them wins
    assert (pro.system_prompt, pro.source, pro.rule_id, pro.variant_id) == ("rule 2", "rule", "rul_2", "var_rule2")
    assert (pro.environment, pro.experiment_id, pro.arm) == ("staging", None, None)
    assert resolve_in(b, plan="enterprise", seats=40).rule_id == "rul_1"
    assert resolve_in(b, plan="free", seats="12").rule_id == "rul_3"  # a numeric string compares as a number
    plain = resolve_in(b, plan="free", seats=2)
    assert (plain.system_prompt, plain.source, plain.rule_id, plain.environment) == ("plain", "agent", None, "staging")


def test_order_is_the_bundles_order_not_the_ids() -> None:
    first, second = rule(9, cond("beta", "eq", True)), rule(1, cond("beta", "exists"))
    assert resolve_in(bundle(rules=[first, second]), beta=True).rule_id == "rul_9"
    assert resolve_in(bundle(rules=[second, first]), beta=True).rule_id == "rul_1"


def test_every_condition_of_a_rule_must_hold() -> None:
    b = bundle(rules=[rule(1, cond("plan", "eq", "pro"), cond("country", "eq", "de"))])
    assert resolve_in(b, plan="pro", country="de").rule_id == "rul_1"
    assert resolve_in(b, plan="pro", country="fr").rule_id is None
    assert resolve_in(b, plan="pro").rule_id is None


def test_the_subject_is_the_attribute_subject() -> None:
    b = bundle(rules=[rule(1, cond("subject", "in", values=["user-1", "user-2"])), rule(2, cond("subject", "exists"))])
    assert resolve_in(b, "user-2").rule_id == "rul_1"
    assert resolve_in(b, "user-3").rule_id == "rul_2"  # any subject
    assert resolve_in(b).rule_id is None  # no subject: missing
    with pytest.raises(ValidationFailed) as raised:
        resolve_in(b, None, subject="user-1")  # never as an attribute
    assert raised.value.errors[0]["param"] == "attributes.subject"


def test_missing_attributes_hold_only_for_not_exists() -> None:
    b = bundle(
        rules=[
            rule(1, cond("plan", "neq", "pro")),  # false on a missing attribute
            rule(2, cond("plan", "not_in", values=["pro"])),  # so is this
            rule(3, cond("plan", "not_exists")),
        ]
    )
    assert resolve_in(b).rule_id == "rul_3"
    assert resolve_in(b, seats=3).rule_id == "rul_3"
    assert resolve_in(b, plan="free").rule_id == "rul_1"
    assert resolve_in(b, plan="pro").rule_id is None


# ---------------------------------------------------------------------------------- splits


def test_a_rule_comes_before_the_split_and_the_split_before_the_plain_config() -> None:
    b = bundle(rules=[rule(1, cond("plan", "eq", "pro"))], experiment=split(1, 1, 2, salt="salt-1"))
    for n in range(200):
        subject = f"user-{n}"
        assert resolve_in(b, subject, plan="pro").rule_id == "rul_1"  # the rule, whatever the arm
        served = resolve_in(b, subject, plan="free")
        arm = assign("salt-1", subject, [1, 1, 2])
        assert (served.system_prompt, served.source, served.arm) == (f"arm {arm}", "experiment", arm)
        assert (served.experiment_id, served.rule_id, served.environment) == (EXPERIMENT_ID, None, "production")
    assert resolve_in(b).system_prompt == "plain"  # no subject: no arm
    assert resolve_in(b, None, plan="pro").rule_id == "rul_1"


@pytest.mark.parametrize("status", ["running", "paused"])
def test_a_running_or_paused_split_serves(status: str) -> None:
    b = bundle(experiment=split(1, 1, kind="rollout", status=status, percent=50))
    assert {resolve_in(b, f"u{n}").source for n in range(100)} == {"rollout"}


@pytest.mark.parametrize("status", ["draft", "stopped", "completed", "rolled_back"])
def test_a_split_in_another_status_serves_nothing(status: str) -> None:
    b = bundle(experiment=split(1, 1, kind="rollout", status=status, percent=50))
    assert {resolve_in(b, f"u{n}").system_prompt for n in range(100)} == {"plain"}


def test_a_rollout_at_p_percent_gives_arm_1_the_top_100p_buckets() -> None:
    subjects = [f"user-{n}" for n in range(3000)]
    previous: set[str] = set()
    for percent in (1, 5, 25, 50, 99, 100):
        b = bundle(experiment=split(1, 1, kind="rollout", percent=percent, salt="roll"))
        moved = set()
        for subject in subjects:
            served = resolve_in(b, subject)
            expected = 0 if bucket("roll", subject) < BUCKETS - 100 * percent else 1
            assert served.arm == expected and served.system_prompt == f"arm {expected}"
            assert served.source == "rollout" and served.experiment_id == EXPERIMENT_ID
            if expected:
                moved.add(subject)
        assert previous <= moved  # a subject moved to the variant never goes back as the percent rises
        previous = moved
    assert previous == set(subjects)  # at 100 %, everyone
    assert 0.45 < len([s for s in subjects if bucket("roll", s) >= 5000]) / len(subjects) < 0.55


def test_a_rollout_reads_its_percent_from_progress_too() -> None:
    experiment = split(1, 1, kind="rollout", salt="roll")
    experiment["progress"] = {"step": 0, "percent": 10}
    b = bundle(experiment=experiment)
    for n in range(500):
        assert resolve_in(b, f"u{n}").arm == (0 if bucket("roll", f"u{n}") < 9000 else 1)


def test_a_rollout_without_a_percent_splits_by_its_weights() -> None:
    # Weights 3:1 lay out differently from a 25 % rollout (arm 0 first either way, but the
    # largest-remainder layout is the experiments'); with no percent, the weights decide.
    b = bundle(experiment=split(3, 1, kind="rollout", salt="roll"))
    for n in range(500):
        assert resolve_in(b, f"u{n}").arm == assign("roll", f"u{n}", [3, 1])


# ---------------------------------------------------------------------- old (v1) bundles


def test_a_v1_bundle_has_no_rules_and_its_experiment_runs() -> None:
    b = bundle(None, experiment=split(1, 1, salt="v1"))
    for key in ("kind", "status"):
        del b["experiment"][key]
    assert "rules" not in b and "environment" not in b
    plain = resolve_in(b, None, plan="pro")
    assert (plain.system_prompt, plain.source, plain.environment) == ("plain", "agent", "production")
    for n in range(100):
        served = resolve_in(b, f"u{n}", plan="pro")
        arm = assign("v1", f"u{n}", [1, 1])
        assert (served.source, served.arm, served.experiment_id) == ("experiment", arm, EXPERIMENT_ID)


# ---------------------------------------------------------------------- attribute checks


@pytest.mark.parametrize(
    ("attributes", "param"),
    [
        ({"subject": "u1"}, "attributes.subject"),
        ({"": "x"}, "attributes."),
        ({"a" * 65: "x"}, "attributes." + "a" * 65),
        ({"plan name": "x"}, "attributes.plan name"),
        ({"plän": "x"}, "attributes.plän"),
        ({"plan": "x" * 1025}, "attributes.plan"),
        ({"plan": None}, "attributes.plan"),
        ({"plan": ["pro"]}, "attributes.plan"),
        ({"plan": {"tier": 1}}, "attributes.plan"),
        ({"ratio": float("nan")}, "attributes.ratio"),
        ({"ratio": float("inf")}, "attributes.ratio"),
        ({"huge": 10**400}, "attributes.huge"),
        ({f"a{n}": n for n in range(51)}, "attributes"),
    ],
)
def test_attributes_the_service_would_refuse_raise_naming_them(attributes: dict[Any, Any], param: str) -> None:
    b = bundle(rules=[rule(1, cond("plan", "exists"))])
    with pytest.raises(ValidationFailed) as raised:
        answer(local(b), "u1", None, attributes)
    assert raised.value.status == 422 and raised.value.code == "validation_error"
    assert [e["param"] for e in raised.value.errors] == [param]
    assert param in str(raised.value)


def test_every_bad_attribute_is_named_and_the_limits_themselves_pass() -> None:
    with pytest.raises(ValidationFailed) as raised:
        resolve_in(bundle(), "u1", **{"ok": 1, "bad name": 1, "long": "x" * 2000, "subject": "u"})
    assert [e["param"] for e in raised.value.errors] == ["attributes.bad name", "attributes.long", "attributes.subject"]
    fine = {"a" * 64: "x" * 1024, "A-z_0.9": True, "n": -1.5, "i": 10**300}
    fine.update({f"k{n}": n for n in range(50 - len(fine))})
    assert resolve_in(bundle(), "u1", **fine).system_prompt == "plain"


# -------------------------------------------------------------------- through the clients


async def test_each_environment_has_its_own_bundle_and_watch() -> None:
    service = FakeService(
        {
            None: bundle("production", plain="default"),
            "production": bundle("production", plain="production"),
            "staging": bundle("staging", rules=[rule(1, cond("plan", "eq", "pro"), environment="staging")]),
        }
    )
    with service.serving():
        async with AsyncAgentVariants(URL, "avk_test") as sdk:
            pro = {"plan": "pro"}
            for _ in range(3):  # fetched once each, then from memory
                default = await sdk.resolve("support-bot", "u1", attributes=pro)
                production = await sdk.resolve("support-bot", "u1", attributes=pro, environment="production")
                staging = await sdk.resolve("support-bot", "u1", attributes=pro, environment="staging")
            assert (default.system_prompt, default.environment) == ("default", "production")
            assert (production.system_prompt, production.environment) == ("production", "production")
            assert (staging.system_prompt, staging.rule_id, staging.environment) == ("rule 1", "rul_1", "staging")
            free = await sdk.resolve("support-bot", "u1", attributes={"plan": "free"}, environment="staging")
            assert (free.system_prompt, free.environment) == ("plain", "staging")
            await asyncio.sleep(0.05)  # the watches connect
            with pytest.raises(ValidationFailed):
                await sdk.resolve("support-bot", attributes={"subject": "u1"}, environment="staging")
    assert sorted(map(str, service.paths("/bundle"))) == ["None", "production", "staging"]
    assert sorted(map(str, service.paths("/bundle/watch"))) == ["None", "production", "staging"]


async def test_a_change_pushed_to_one_environment_leaves_the_other_alone() -> None:
    service = FakeService({"production": bundle("production"), "staging": bundle("staging")})
    with service.serving():
        async with AsyncAgentVariants(URL, "avk_test") as sdk:
            for environment in ("production", "staging"):
                assert (await sdk.resolve("support-bot", "u1", environment=environment)).system_prompt == "plain"
            await asyncio.sleep(0.05)  # the watches connect
            ruled = bundle("staging", rules=[rule(1, cond("subject", "eq", "u1"), environment="staging")], etag="e2")
            service.push("staging", ruled)
            for _ in range(200):
                if (await sdk.resolve("support-bot", "u1", environment="staging")).rule_id == "rul_1":
                    break
                await asyncio.sleep(0.01)
            assert (await sdk.resolve("support-bot", "u1", environment="staging")).rule_id == "rul_1"
            assert (await sdk.resolve("support-bot", "u2", environment="staging")).rule_id is None
            assert (await sdk.resolve("support-bot", "u1", environment="production")).rule_id is None


def test_the_blocking_client_keys_its_copies_by_environment_too() -> None:
    service = FakeService(
        {
            None: bundle("production", plain="default", experiment=split(1, 1, salt="k")),
            "staging": bundle("staging", rules=[rule(1, cond("subject", "eq", "vip"), environment="staging")]),
        }
    )
    with service.serving(), AgentVariants(URL, "avk_test") as sdk:
        assert sdk.resolve("support-bot", "vip").arm == assign("k", "vip", [1, 1])
        assert sdk.resolve("support-bot", "vip", environment="staging").rule_id == "rul_1"
        assert sdk.resolve("support-bot", "other", environment="staging").system_prompt == "plain"
        with pytest.raises(ValidationFailed):
            sdk.resolve("support-bot", "vip", attributes={"bad name": 1}, environment="staging")
    assert sorted(map(str, service.paths("/bundle"))) == ["None", "staging"]


# ---------------------------------------------------------------------------- outcomes


def test_an_outcome_carries_the_environment_its_config_was_resolved_in() -> None:
    staging = resolve_in(bundle("staging", experiment=split(1, 1)), "u1")
    outcome = outcome_of(staging, {"input_tokens": 1, "output_tokens": 2, "latency_ms": 3})
    assert outcome["environment"] == "staging" and outcome["experiment_id"] == EXPERIMENT_ID
    assert outcome_of(None, {"input_tokens": 1, "output_tokens": 2, "latency_ms": 3}).get("environment") is None
    explicit = outcome_of(staging, {"environment": "qa", "input_tokens": 1, "output_tokens": 2, "latency_ms": 3})
    assert explicit["environment"] == "qa"


@pytest.mark.parametrize("knows_environments", [True, False])
async def test_outcomes_reach_a_service_with_or_without_environments(knows_environments: bool) -> None:
    service = FakeService({None: bundle("staging")})
    batches: list[list[dict[str, Any]]] = []
    handle = service.handle

    def outcomes(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/outcomes"):
            return handle(request)
        items = json.loads(request.content)["data"]
        batches.append(items)
        if not knows_environments and any("environment" in item for item in items):
            errors = [
                {"param": f"data[{i}].environment", "message": "Extra inputs are not permitted"}
                for i, item in enumerate(items)
                if "environment" in item
            ]
            problem = {"status": 422, "code": "validation_error", "detail": "Invalid request", "errors": errors}
            return httpx.Response(422, json=problem)
        return httpx.Response(202, json={"object": "outcome_batch", "accepted": len(items)})

    service.transport = httpx.MockTransport(outcomes)
    with service.serving():
        async with AsyncAgentVariants(URL, "avk_test") as sdk:
            config = await sdk.resolve("support-bot", "u1")
            await sdk.report("support-bot", config=config, input_tokens=1, output_tokens=2, latency_ms=3)
            await sdk.report("support-bot", input_tokens=1, output_tokens=2, latency_ms=3)
            stats = await sdk.flush(timeout=5)
    assert (stats.sent, stats.rejected) == (2, 0)
    assert [item.get("environment") for item in batches[0]] == ["staging", None]
    if knows_environments:
        assert len(batches) == 1
    else:  # sent again without it, and stored
        assert len(batches) == 2 and all("environment" not in item for item in batches[1])


async def test_outcomes_naming_an_environment_the_service_does_not_have_are_rejected_not_moved() -> None:
    # A service that knows `environment` names it too when the environment is unknown (deleted
    # since the config was resolved): sending those outcomes again without it would store
    # them in the request's environment instead.
    service = FakeService({None: bundle("staging")})
    batches: list[list[dict[str, Any]]] = []
    handle = service.handle

    def outcomes(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/outcomes"):
            return handle(request)
        items = json.loads(request.content)["data"]
        batches.append(items)
        errors = [
            {"param": f"data[{i}].environment", "message": "Environment 'staging' not found"}
            for i, item in enumerate(items)
            if item.get("environment") == "staging"
        ]
        if errors:
            problem = {"status": 422, "code": "validation_error", "detail": "Invalid request", "errors": errors}
            return httpx.Response(422, json=problem)
        return httpx.Response(202, json={"object": "outcome_batch", "accepted": len(items)})

    service.transport = httpx.MockTransport(outcomes)
    with service.serving():
        async with AsyncAgentVariants(URL, "avk_test") as sdk:
            config = await sdk.resolve("support-bot", "u1")
            await sdk.report("support-bot", config=config, input_tokens=1, output_tokens=2, latency_ms=3)
            await sdk.report("support-bot", input_tokens=1, output_tokens=2, latency_ms=3)
            stats = await sdk.flush(timeout=5)
    assert (stats.sent, stats.rejected) == (1, 1)
    assert [[item.get("environment") for item in batch] for batch in batches] == [["staging", None], [None]]


# ------------------------------------------------------------------- the reference order

NAMES = ["plan", "seats", "beta", "country", "subject"]
VALUES: list[Any] = ["pro", "free", "de", "1", "10", "1e1", "true", "", 0, 1, 10, 40, 0.5, 10.0, -1, True, False]
SUBJECTS = ["u1", "u2", "vip", "10", "pro", "true"]

values = st.sampled_from(VALUES)


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from([*OPS, "regex"]))  # an op this SDK does not know holds for nothing
    condition: dict[str, Any] = {"attribute": draw(st.sampled_from(NAMES)), "op": op}
    if op in ("in", "not_in"):
        condition["values"] = draw(st.lists(values, max_size=4))  # [] is malformed: false
    elif op not in ("exists", "not_exists") or draw(st.booleans()):
        condition["value"] = draw(values)
    return condition


@st.composite
def bundles(draw: st.DrawFn) -> dict[str, Any]:
    environment = draw(st.sampled_from(["production", "staging", None]))  # None: a v1 bundle
    rules = []
    if environment is not None:
        for n in range(draw(st.integers(0, 5))):
            rules.append(rule(n, *draw(st.lists(conditions(), max_size=3)), environment=environment))
    experiment = None
    kind = draw(st.sampled_from(["none", "experiment", "rollout"]))
    if kind == "experiment":
        weights = draw(st.lists(st.integers(1, 10_000), min_size=2, max_size=10))
        status = draw(st.sampled_from(["running", "paused", "draft", "stopped"]))
        experiment = split(*weights, status=status, salt=draw(st.text(max_size=8)))
    elif kind == "rollout":
        percent = draw(st.none() | st.integers(1, 100))
        status = draw(st.sampled_from(["running", "paused", "completed", "rolled_back"]))
        weights = draw(st.lists(st.integers(1, 100), min_size=2, max_size=2))
        experiment = split(*weights, kind="rollout", status=status, percent=percent, salt=draw(st.text(max_size=8)))
    return bundle(environment, rules=rules, experiment=experiment)


contexts = st.tuples(
    st.none() | st.sampled_from(SUBJECTS) | st.text(max_size=10),
    st.dictionaries(st.sampled_from(NAMES[:-1]), values, max_size=4),
)


def reference(b: dict[str, Any], subject: str | None, attributes: dict[str, Any]) -> tuple[Any, ...]:
    """The contract's resolution order, computed from the bundle as sent: (prompt, source,
    rule_id, experiment_id, arm)."""
    matched = first_match(b.get("rules") or [], subject=subject, attributes=attributes)
    if matched is not None:
        return matched["resolved"]["system_prompt"], "rule", matched["id"], None, None
    experiment = b["experiment"]
    if subject is not None and experiment is not None and experiment["status"] in ("running", "paused"):
        salt, percent = experiment["salt"], experiment.get("percent")
        if experiment["kind"] == "rollout" and percent is not None:
            arm = 0 if bucket(salt, subject) < BUCKETS - 100 * percent else 1
        else:
            arm = assign(salt, subject, [a["weight"] for a in experiment["arms"]])
        return f"arm {arm}", experiment["kind"], None, experiment["id"], arm
    return "plain", "agent", None, None, None


@settings(max_examples=150, deadline=None)
@given(b=bundles(), asked=st.lists(contexts, min_size=1, max_size=15))
def test_the_clients_answers_follow_the_contracts_order(
    b: dict[str, Any], asked: list[tuple[str | None, dict[str, Any]]]
) -> None:
    environment = b.get("environment")
    service = FakeService({environment: b})

    async def run() -> list[ResolvedAgentConfig]:
        async with AsyncAgentVariants(URL, "avk_test") as sdk:
            return [
                await sdk.resolve("support-bot", subject, attributes=attributes, environment=environment)
                for subject, attributes in asked
            ]

    with service.serving():
        got = asyncio.run(run())
    for (subject, attributes), served in zip(asked, got, strict=True):
        expected = reference(b, subject, attributes)
        assert (served.system_prompt, served.source, served.rule_id, served.experiment_id, served.arm) == expected
        assert served.environment == (environment or "production")
