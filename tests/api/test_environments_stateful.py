"""A hypothesis state machine over environments (issue 18) through the HTTP API, against a
model of the contract's resolution order.

Rules create and delete environments, activate and deactivate variants per environment,
replace rule sets with random conditions over a few attributes, create, start and stop
experiments per environment, patch and delete variants; every status is predicted (409
`environment_in_use`, `environment_protected`, `experiment_running`, `variant_active`,
`variant_in_experiment`, `variant_in_rule` included). After every step, in every
environment, `GET .../resolved` (with `subject` and `attr.*`) and `POST .../resolve` (typed
attributes) for random contexts must equal the model: the first rule whose conditions hold
serves its variant; else, with a subject, the running experiment's arm by the contract's
formula (its config as snapshotted at start); else the active variant; else the base.

The model's rule matching is written here from the contract's text ("Targeting rules and
context"), not taken from `first_match`, so that it can catch a bug there. It runs on the
live database (real commits, the resolve cache and its fast path on) through starlette's
TestClient, each run on an agent and environments of its own, which it cleans up.
"""

from __future__ import annotations

import hashlib
import random
import re
import warnings
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from agent_variants.bundles import Freshness, Local, answer
from agent_variants.config import CONFIG_FIELDS
from agent_variants.rules import OPS

from services.api.app import create_app
from tests.helpers import bearer, settings_for_tests, unique

pytestmark = pytest.mark.live

BASE_CONFIG = {
    # No catalogued model: the catalog's limits have tests of their own, and other tests
    # (schemathesis) write catalog rows in the shared live database.
    "model_provider": "uncatalogued",
    "model_name": "gpt-4o",
    "system_prompt": "",
    "user_prompt_template": "",
    "prompt_version": "base",
    "temperature": 1.0,
    "max_tokens": 100,
    "context_window": 0,
    "input_token_limit": 0,
    "token_budget": 0,
    "timeout_seconds": 60,
    "max_retries": 2,
}
PRODUCTION = "production"
MAX_EXTRA_ENVIRONMENTS = 2

# ------------------------------------------------------------------ the contract, restated

NUMERIC = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_number(attribute: object) -> float | None:
    """The attribute as a number, when it is one or a numeric string."""
    if is_number(attribute):
        return float(attribute)  # type: ignore[arg-type]
    if isinstance(attribute, str) and NUMERIC.fullmatch(attribute):
        return float(attribute)
    return None


def equals(value: object, attribute: object) -> bool:
    """`eq`: a number value matches a number or numeric string of equal value; a boolean
    value that boolean or the string "true"/"false"; a string value an identical string."""
    if isinstance(value, bool):
        return attribute is value or attribute == ("true" if value else "false") and isinstance(attribute, str)
    if is_number(value):
        number = as_number(attribute)
        return number is not None and number == float(value)  # type: ignore[arg-type]
    return isinstance(attribute, str) and attribute == value


def holds(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    op, name = condition["op"], condition["attribute"]
    if name not in context:
        return op == "not_exists"
    attribute = context[name]
    if op == "exists":
        return True
    if op in ("eq", "neq"):
        found = equals(condition["value"], attribute)
        return found if op == "eq" else not found
    if op in ("in", "not_in"):
        found = any(equals(value, attribute) for value in condition["values"])
        return found if op == "in" else not found
    if op in ("contains", "starts_with", "ends_with"):
        if not isinstance(attribute, str):
            return False
        value = condition["value"]
        return {
            "contains": value in attribute,
            "starts_with": attribute.startswith(value),
            "ends_with": attribute.endswith(value),
        }[op]
    if op in ("gt", "gte", "lt", "lte"):
        number = as_number(attribute)
        if number is None:
            return False
        value = float(condition["value"])
        return {"gt": number > value, "gte": number >= value, "lt": number < value, "lte": number <= value}[op]
    return False  # not_exists on a present attribute


def arm_of(salt: str, subject: str, weights: list[int]) -> int:
    """The contract's assignment formula."""
    bucket = int.from_bytes(hashlib.sha256(f"{salt}:{subject}".encode()).digest()[:8], "big") % 10000
    total = sum(weights)
    sizes = [w * 10000 // total for w in weights]
    left = 10000 - sum(sizes)
    for i in sorted(range(len(weights)), key=lambda i: (-(weights[i] * 10000 % total), i))[:left]:
        sizes[i] += 1
    upper = 0
    for index, size in enumerate(sizes):
        upper += size
        if bucket < upper:
            return index
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ what is drawn

ATTRIBUTES = ("plan", "seats", "beta", "subject")
STRING_VALUES = ("pro", "free", "pr", "5", "true")
NUMBER_VALUES = (0, 5, 10.5, 40, -1)
SUBJECTS = ("u1", "u2", "u3", "pro-user", "10")
# Context values: strings (as `attr.*` sends them) and, for POST .../resolve, typed ones too.
CONTEXT_VALUES: dict[str, tuple[Any, ...]] = {
    "plan": ("pro", "free", "pro-max", "5", "true", "", 5, True),
    "seats": ("5", "40", "x", "10.5", "1e1", "-1", "05", 5, 40, 10.5, -1, False),
    "beta": ("true", "false", "TRUE", True, False, 0),
}

scalars = st.sampled_from(STRING_VALUES) | st.sampled_from(NUMBER_VALUES) | st.booleans()


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    attribute = draw(st.sampled_from(ATTRIBUTES))
    op = draw(st.sampled_from(OPS))
    condition: dict[str, Any] = {"attribute": attribute, "op": op}
    if op in ("eq", "neq"):
        condition["value"] = draw(scalars)
    elif op in ("in", "not_in"):
        condition["values"] = draw(st.lists(scalars, min_size=1, max_size=3))
    elif op in ("contains", "starts_with", "ends_with"):
        condition["value"] = draw(st.sampled_from(STRING_VALUES))
    elif op in ("gt", "gte", "lt", "lte"):
        condition["value"] = draw(st.sampled_from(NUMBER_VALUES))
    return condition


def strings_only(value: Any) -> str:
    """An attribute as `attr.*` sends it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


SDK_EXTRAS = ("agent_id", "variant_id", "agent_slug", "variant_slug", "source", "experiment_id", "arm", "environment")


def sdk_view(config: Any) -> dict[str, Any]:
    return {name: getattr(config, name) for name in (*SDK_EXTRAS, "rule_id", *CONFIG_FIELDS)}


def sdk_view_of(body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name in (*SDK_EXTRAS, "rule_id", *CONFIG_FIELDS)}


class EnvironmentsMachine(RuleBasedStateMachine):
    client: ClassVar[TestClient]
    seen: ClassVar[dict[str, int]] = {}  # outcomes over all runs: the test checks each came up

    def __init__(self) -> None:
        super().__init__()
        self.agent: str | None = None
        self.slug = ""
        self.variants: dict[str, dict[str, Any]] = {}  # id -> overrides
        self.variant_slugs: dict[str, str] = {}
        self.environments: dict[str, str] = {}  # slug -> id, production included
        self.deleted_environments: list[str] = []
        self.active: dict[str, str | None] = {}  # environment slug -> variant id
        self.rules: dict[str, list[dict[str, Any]]] = {}  # environment slug -> rules as stored
        self.running: dict[str, dict[str, Any]] = {}  # environment slug -> experiment
        self.drafts: dict[str, dict[str, Any]] = {}  # id -> experiment (draft)
        self.stopped: list[dict[str, Any]] = []
        self.rng = random.Random(0)
        self.versions = 0

    # ------------------------------------------------------------------ helpers

    def call(self, method: str, path: str, expected: int | set[int], *, codes: set[str] | None = None, **kw: Any):
        response = self.client.request(method, path, **kw)
        allowed = {expected} if isinstance(expected, int) else expected
        assert response.status_code in allowed, (method, path, kw, response.status_code, response.text)
        body = response.json() if response.content else None
        if codes is not None:
            assert body["code"] in codes, (method, path, kw, response.text)
            self.seen[body["code"]] = self.seen.get(body["code"], 0) + 1
        return body

    def agent_path(self, suffix: str = "") -> str:
        return f"/v1/agents/{self.agent}{suffix}"

    def env_ref(self, data: st.DataObject, slug: str) -> str:
        """An environment named by slug or by id."""
        return data.draw(st.sampled_from([slug, self.environments[slug]]))

    def config_of(self, variant: str | None) -> dict[str, Any]:
        overrides = self.variants[variant] if variant is not None else {}
        return {**BASE_CONFIG, **overrides}

    def in_use(self, slug: str) -> bool:
        return bool(self.active.get(slug) or self.rules.get(slug) or slug in self.running)

    # ------------------------------------------------------------------ rules

    @initialize(seed=st.integers(0, 2**32 - 1), count=st.integers(2, 3))
    def create_agent(self, seed: int, count: int) -> None:
        self.rng = random.Random(seed)
        body = self.call("POST", "/v1/agents", 201, json={"name": unique("envs-stateful"), "config": BASE_CONFIG})
        self.agent, self.slug = body["id"], body["slug"]
        self.environments = {PRODUCTION: self.call("GET", "/v1/environments/production", 200)["id"]}
        for _ in range(count):
            self.create_variant()
        self.create_environment()  # one besides production from the start

    @precondition(lambda self: len(self.variants) < 5)
    @rule()
    def create_variant(self) -> None:
        self.versions += 1
        overrides = {"prompt_version": f"v{self.versions}", "temperature": self.rng.choice([0.0, 0.5, 2.0])}
        body = self.call(
            "POST", self.agent_path("/variants"), 201, json={"variant_name": unique("v"), "overrides": overrides}
        )
        self.variants[body["id"]] = overrides
        self.variant_slugs[body["id"]] = body["slug"]

    @precondition(lambda self: len(self.environments) <= MAX_EXTRA_ENVIRONMENTS)
    @rule()
    def create_environment(self) -> None:
        body = self.call("POST", "/v1/environments", 201, json={"name": unique("envs-stateful")})
        self.environments[body["slug"]] = body["id"]

    @precondition(lambda self: any(self.in_use(slug) for slug in self.environments if slug != PRODUCTION))
    @rule(data=st.data())
    def delete_an_environment_in_use(self, data: st.DataObject) -> None:
        used = sorted(slug for slug in self.environments if slug != PRODUCTION and self.in_use(slug))
        self.delete_environment(data, data.draw(st.sampled_from(used)))

    @rule(data=st.data())
    def delete_environment(self, data: st.DataObject, slug: str | None = None) -> None:
        others = sorted(set(self.environments) - {PRODUCTION})
        if slug is None:
            production = not others or data.draw(st.integers(0, 4)) == 0
            slug = PRODUCTION if production else data.draw(st.sampled_from(others))
        path = f"/v1/environments/{self.env_ref(data, slug)}"
        if slug == PRODUCTION:
            self.call("DELETE", path, 409, codes={"environment_protected"})
        elif self.in_use(slug):
            self.call("DELETE", path, 409, codes={"environment_in_use"})
        else:
            self.call("DELETE", path, 204)
            del self.environments[slug]
            self.active.pop(slug, None)
            self.rules.pop(slug, None)
            # Its drafts and stopped experiments go with it.
            self.drafts = {k: v for k, v in self.drafts.items() if v["environment"] != slug}
            self.deleted_environments.append(slug)

    @precondition(lambda self: self.variants)
    @rule(data=st.data())
    def activate(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(self.environments)))
        variant = data.draw(st.sampled_from(sorted(self.variants)))
        ref = data.draw(st.sampled_from([variant, self.variant_slugs[variant]]))
        body = self.call(
            "POST", self.agent_path(f"/variants/{ref}/activate"), 200, params={"environment": self.env_ref(data, slug)}
        )
        assert body["is_active"] is True
        self.active[slug] = variant
        assert body["active_in"] == sorted(s for s, v in self.active.items() if v == variant)

    @precondition(lambda self: self.variants)
    @rule(data=st.data())
    def deactivate(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(self.environments)))
        options = sorted(self.variants)
        if self.active.get(slug):
            options.append(self.active[slug])  # often the active one
        variant = data.draw(st.sampled_from(options))
        body = self.call("POST", self.agent_path(f"/variants/{variant}/deactivate"), 200, params={"environment": slug})
        assert body["is_active"] is False
        if self.active.get(slug) == variant:
            self.active[slug] = None

    @rule(
        data=st.data(),
        rules=st.lists(st.lists(conditions(), min_size=1, max_size=3), max_size=3),
    )
    def put_rules(self, data: st.DataObject, rules: list[list[dict[str, Any]]]) -> None:
        slug = data.draw(st.sampled_from(sorted(self.environments)))
        serve = ["base", *sorted(self.variants)]
        sent = []
        for index, when in enumerate(rules):
            served = data.draw(st.sampled_from(serve))
            ref = self.variant_slugs[served] if served != "base" and data.draw(st.booleans()) else served
            sent.append({"name": f"rule {index}", "when": when, "serve": {"variant": ref}})
        params = {"environment": self.env_ref(data, slug)}
        body = self.call("PUT", self.agent_path("/rules"), 200, params=params, json={"rules": sent})
        assert body["environment"] == slug
        assert [r["name"] for r in body["rules"]] == [r["name"] for r in sent]
        for stored, given in zip(body["rules"], sent, strict=True):
            assert stored["when"] == given["when"]
            served = given["serve"]["variant"]
            expected = served if served == "base" or served in self.variants else self.id_of_slug(served)
            assert stored["serve"]["variant"] == expected
        self.rules[slug] = body["rules"]

    def id_of_slug(self, slug: str) -> str:
        return next(v for v, s in self.variant_slugs.items() if s == slug)

    @precondition(lambda self: self.drafts)
    @rule(data=st.data())
    def delete_draft(self, data: st.DataObject) -> None:
        experiment = self.drafts.pop(data.draw(st.sampled_from(sorted(self.drafts))))
        path = self.agent_path(f"/experiments/{experiment['id']}")
        self.call("DELETE", path, 204, params={"environment": experiment["environment"]})

    @precondition(lambda self: self.variants and len(self.drafts) < 2)
    @rule(data=st.data(), weights=st.lists(st.integers(1, 5), min_size=2, max_size=3))
    def create_experiment(self, data: st.DataObject, weights: list[int]) -> None:
        slug = data.draw(st.sampled_from(sorted(self.environments)))
        choices = ["base", *sorted(self.variants)]
        weights = weights[: len(choices)]
        picked = data.draw(st.permutations(choices))[: len(weights)]
        arms = [{"variant": v, "weight": w} for v, w in zip(picked, weights, strict=True)]
        body = {"name": unique("e"), "arms": arms, "environment": self.env_ref(data, slug)}
        created = self.call("POST", self.agent_path("/experiments"), 201, json=body)
        assert created["status"] == "draft" and created["environment"] == slug
        self.drafts[created["id"]] = {
            "id": created["id"],
            "environment": slug,
            "salt": created["salt"],
            "arms": [None if v == "base" else v for v in picked],
            "weights": weights,
        }
        if data.draw(st.booleans()):
            self.start_experiment(data, created["id"])

    @precondition(lambda self: self.drafts)
    @rule(data=st.data())
    def start_experiment(self, data: st.DataObject, experiment_id: str | None = None) -> None:
        experiment = self.drafts[experiment_id or data.draw(st.sampled_from(sorted(self.drafts)))]
        slug = experiment["environment"]
        path = self.agent_path(f"/experiments/{experiment['id']}/start")
        if slug in self.running:
            self.call("POST", path, 409, codes={"experiment_running"}, params={"environment": slug})
            return
        body = self.call("POST", path, 200, params={"environment": self.env_ref(data, slug)})
        assert body["status"] == "running"
        # Each arm serves its config as it is now, whatever happens to the variant later.
        experiment["snapshots"] = [
            (variant, self.variant_slugs[variant] if variant else None, self.config_of(variant))
            for variant in experiment["arms"]
        ]
        self.running[slug] = experiment
        del self.drafts[experiment["id"]]

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def start_a_second_experiment(self, data: st.DataObject) -> None:
        """One running experiment per agent and environment: a second is 409 there."""
        slug = data.draw(st.sampled_from(sorted(self.running)))
        arms = [{"variant": "base", "weight": 1}, {"variant": "base", "weight": 2}]
        if self.variants:
            arms[1]["variant"] = sorted(self.variants)[0]
        created = self.call(
            "POST", self.agent_path("/experiments"), 201, json={"name": unique("e"), "arms": arms, "environment": slug}
        )
        path = self.agent_path(f"/experiments/{created['id']}/start")
        self.call("POST", path, 409, codes={"experiment_running"}, params={"environment": slug})
        self.call("DELETE", self.agent_path(f"/experiments/{created['id']}"), 204, params={"environment": slug})

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def stop_experiment(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(self.running)))
        experiment = self.running.pop(slug)
        path = self.agent_path(f"/experiments/{experiment['id']}/stop")
        body = self.call("POST", path, 200, params={"environment": self.env_ref(data, slug)})
        assert body["status"] == "stopped"
        self.stopped.append(experiment)

    @precondition(lambda self: self.variants)
    @rule(data=st.data())
    def patch_variant(self, data: st.DataObject) -> None:
        """A shared change: every environment's rules and activation see it, a running
        experiment keeps its snapshot."""
        variant = data.draw(st.sampled_from(sorted(self.variants)))
        self.versions += 1
        overrides = {"prompt_version": f"v{self.versions}"}
        body = self.call("PATCH", self.agent_path(f"/variants/{variant}"), 200, json={"overrides": overrides})
        self.variants[variant] = {**self.variants[variant], **overrides}
        assert body["overrides"] == self.variants[variant]

    def held(self) -> dict[str, set[str]]:
        """Why each variant cannot be deleted now (empty: it can)."""
        reasons: dict[str, set[str]] = {variant: set() for variant in self.variants}
        for variant in self.active.values():
            if variant is not None:
                reasons[variant].add("variant_active")
        for experiment in [*self.drafts.values(), *self.running.values()]:
            for variant in experiment["arms"]:
                if variant in reasons:
                    reasons[variant].add("variant_in_experiment")
        for rules in self.rules.values():
            for one in rules:
                if one["serve"]["variant"] in reasons:
                    reasons[one["serve"]["variant"]].add("variant_in_rule")
        return reasons

    @precondition(lambda self: any(self.held().values()))
    @rule(data=st.data())
    def delete_a_variant_in_use(self, data: st.DataObject) -> None:
        """Random steps rarely pick a variant held by one thing only: pick one often."""
        self.delete_variant(data, in_use=True)

    @precondition(lambda self: any(why == {"variant_active"} for why in self.held().values()))
    @rule(data=st.data())
    def delete_an_active_variant(self, data: st.DataObject) -> None:
        """The refusal the run must reach (asserted at the end): a variant active somewhere and
        held by nothing else, so `variant_active` is the one right answer."""
        options = sorted(v for v, why in self.held().items() if why == {"variant_active"})
        variant = data.draw(st.sampled_from(options))
        self.call("DELETE", self.agent_path(f"/variants/{variant}"), 409, codes={"variant_active"})

    @precondition(lambda self: self.variants)
    @rule(data=st.data())
    def delete_variant(self, data: st.DataObject, in_use: bool = False) -> None:
        held = self.held()
        options = sorted(self.variants)
        if in_use:  # a variant held for one reason only, when some is: each code comes up
            reason = data.draw(st.sampled_from(sorted(set().union(*held.values()))))
            alone = sorted(v for v, why in held.items() if why == {reason})
            options = alone or sorted(v for v, why in held.items() if reason in why)
        variant = data.draw(st.sampled_from(options))
        path = self.agent_path(f"/variants/{data.draw(st.sampled_from([variant, self.variant_slugs[variant]]))}")
        reasons = held[variant]
        if reasons:
            # When several hold, any of them is a right answer; the first the service checks wins.
            self.call("DELETE", path, 409, codes=reasons)
            return
        self.call("DELETE", path, 204)
        del self.variants[variant]

    # ------------------------------------------------------------------ the model's answer

    def expected(self, slug: str, subject: str | None, attributes: dict[str, Any]) -> dict[str, Any]:
        context = dict(attributes)
        if subject is not None:
            context["subject"] = subject
        for one in self.rules.get(slug, []):
            if all(holds(condition, context) for condition in one["when"]):
                served = one["serve"]["variant"]
                variant = None if served == "base" else served
                return self.answer(slug, "rule", variant, self.config_of(variant), rule_id=one["id"])
        experiment = self.running.get(slug)
        if subject is not None and experiment is not None:
            arm = arm_of(experiment["salt"], subject, experiment["weights"])
            variant, variant_slug, config = experiment["snapshots"][arm]
            return self.answer(
                slug, "experiment", variant, config, experiment_id=experiment["id"], arm=arm, variant_slug=variant_slug
            )
        variant = self.active.get(slug)
        return self.answer(slug, "variant" if variant else "agent", variant, self.config_of(variant))

    def answer(
        self, slug: str, source: str, variant: str | None, config: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        answer = {
            "object": "resolved_agent_config",
            "agent_id": self.agent,
            "agent_slug": self.slug,
            "variant_id": variant,
            "variant_slug": self.variant_slugs[variant] if variant else None,
            "source": source,
            "experiment_id": None,
            "arm": None,
            "environment": slug,
            "rule_id": None,
            **config,
            # The machine sets no keyed field (their resolution has tests of its own).
            "params": {},
            "tools": {},
            "variables": {},
        }
        answer.update(extra)
        return answer

    def contexts(self) -> list[tuple[str | None, dict[str, Any]]]:
        """A few random contexts (the machine's seed drives them, so runs replay)."""
        found: list[tuple[str | None, dict[str, Any]]] = [(None, {})]
        for _ in range(2):
            subject = self.rng.choice((None, *SUBJECTS))
            names = self.rng.sample(sorted(CONTEXT_VALUES), self.rng.randint(0, 3))
            found.append((subject, {name: self.rng.choice(CONTEXT_VALUES[name]) for name in names}))
        return found

    # ------------------------------------------------------------------ invariants

    @invariant()
    def resolution_matches_the_model_in_every_environment(self) -> None:
        if self.agent is None:
            return
        for slug, environment_id in sorted(self.environments.items()):
            bundle = self.call("GET", f"/v1/agents/{self.agent}/bundle", 200, params={"environment": slug})
            local = Local.of(bundle, Freshness())
            for subject, attributes in self.contexts():
                expected = self.expected(slug, subject, attributes)
                ref = self.rng.choice((slug, environment_id, None if slug == PRODUCTION else slug))
                agent = self.rng.choice((self.agent, self.slug))
                # POST .../resolve: typed attributes, the environment in the body or the query.
                body: dict[str, Any] = {}
                if subject is not None:
                    body["subject"] = subject
                if attributes:
                    body["attributes"] = attributes
                params = {}
                if ref is not None:
                    if self.rng.random() < 0.5:
                        body["environment"] = ref
                    else:
                        params["environment"] = ref
                got = self.call("POST", f"/v1/agents/{agent}/resolve", 200, json=body, params=params)
                assert got == expected, ("POST", slug, subject, attributes, self.rules.get(slug))
                sdk = answer(local, subject, None, attributes)  # the SDK's `resolve`, from the bundle
                assert sdk_view(sdk) == sdk_view_of(got), ("SDK", slug, subject, attributes)
                # GET .../resolved: attributes as strings.
                strings = {name: strings_only(value) for name, value in attributes.items()}
                query: dict[str, str] = {f"attr.{name}": value for name, value in strings.items()}
                if subject is not None:
                    query["subject"] = subject
                if ref is not None:
                    query["environment"] = ref
                expected = self.expected(slug, subject, strings)
                got = self.call("GET", f"/v1/agents/{agent}/resolved", 200, params=query)
                assert got == expected, ("GET", slug, subject, strings, self.rules.get(slug))
        for slug in self.deleted_environments[-2:]:
            problem = self.call(
                "GET", self.agent_path("/resolved"), 404, params={"environment": slug}, codes={"resource_missing"}
            )
            assert [e["param"] for e in problem["errors"]] == ["environment"]

    @invariant()
    def the_agent_names_each_environments_active_variant(self) -> None:
        if self.agent is None:
            return
        agent = self.call("GET", self.agent_path(), 200)
        expected = {slug: self.active.get(slug) for slug in self.environments}
        assert {slug: agent["active_variants"].get(slug) for slug in self.environments} == expected
        assert set(agent["active_variants"]) >= set(self.environments)
        assert not set(agent["active_variants"]) & set(self.deleted_environments)

    def teardown(self) -> None:
        """Leave nothing in use, and delete the environments made (the live database is
        shared with other tests, and holds at most 100)."""
        if self.agent is None:
            return
        for slug in self.environments:
            if self.rules.get(slug):
                self.call("PUT", self.agent_path("/rules"), 200, params={"environment": slug}, json={"rules": []})
            if self.active.get(slug):
                path = self.agent_path(f"/variants/{self.active[slug]}/deactivate")
                self.call("POST", path, 200, params={"environment": slug})
            if slug in self.running:
                path = self.agent_path(f"/experiments/{self.running[slug]['id']}/stop")
                self.call("POST", path, 200, params={"environment": slug})
        for slug in self.environments:
            if slug != PRODUCTION:
                self.call("DELETE", f"/v1/environments/{slug}", 204)


def test_environments_behave_like_the_model(live_url: str, live_key: str) -> None:
    app = create_app(settings_for_tests(database_url=live_url, db_pool_size=2, db_max_overflow=2))
    EnvironmentsMachine.seen = {}
    with TestClient(app, headers=bearer(live_key)) as client:
        EnvironmentsMachine.client = client
        run_state_machine_as_test(
            EnvironmentsMachine,
            settings=settings(
                max_examples=12,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            ),
        )
    # The machine reached refusals (the targeted rules make these two come up in every run;
    # the other codes come up in most runs, too randomly to assert).
    assert {"environment_in_use", "variant_active"} <= set(EnvironmentsMachine.seen), EnvironmentsMachine.seen
