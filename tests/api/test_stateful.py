"""A hypothesis state machine drives variants through the HTTP API against a dict model.

Rules create, patch, activate, deactivate and delete variants and patch the agent's config;
every response status is predicted by the model (404, 409 and 422 included) and after each
step the service must agree with it: at most one active variant, the agent naming the same
one, and `/resolved` equal to the model's COALESCE. It runs on the live database (real
commits) through starlette's TestClient, each machine run on an agent of its own.
"""

from __future__ import annotations

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
    # Starlette 1.x nudges toward `httpx2`; its TestClient works the same with httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from services.api.app import create_app
from tests.helpers import bearer, settings_for_tests, unique

pytestmark = pytest.mark.live

FIELDS = (
    "model_provider",
    "model_name",
    "system_prompt",
    "user_prompt_template",
    "prompt_version",
    "temperature",
    "max_tokens",
    "context_window",
    "input_token_limit",
    "token_budget",
    "timeout_seconds",
    "max_retries",
)
START_CONFIG = {
    # No catalogued model: the catalog's limits have tests of their own, and other tests
    # (schemathesis) write catalog rows in the shared live database.
    "model_provider": "uncatalogued",
    "model_name": "gpt-4o",
    "system_prompt": "",
    "user_prompt_template": "",
    "prompt_version": "",
    "temperature": 1.0,
    "max_tokens": 100,
    "context_window": 0,
    "input_token_limit": 0,
    "token_budget": 0,
    "timeout_seconds": 60,
    "max_retries": 2,
}  # no window yet, and small limits: a later window fits the base but not every variant

# Few, small values, so that sums land on both sides of the rule's window often and
# patches often change nothing.
_hundreds = st.integers(1, 60).map(lambda n: n * 100)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "model_name": st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude"]),
    "system_prompt": st.sampled_from(["", "Be brief.", "Ünïcödé ✓"]),
    "temperature": st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    "max_tokens": _hundreds,
    "context_window": st.one_of(st.just(0), _hundreds),
    "input_token_limit": st.one_of(st.just(0), _hundreds),
    "max_retries": st.integers(0, 3),
}
overrides = st.fixed_dictionaries({}, optional=VALUES)
override_patches = st.fixed_dictionaries({}, optional={k: st.none() | v for k, v in VALUES.items()})
config_patches = st.fixed_dictionaries({}, optional=VALUES)


def merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def resolve(variant_overrides: dict[str, Any] | None, base: dict[str, Any]) -> dict[str, Any]:
    chosen = variant_overrides or {}
    return {name: chosen[name] if name in chosen else base[name] for name in FIELDS}


def consistent(config: dict[str, Any]) -> bool:
    window = config["context_window"]
    return window == 0 or config["input_token_limit"] + config["max_tokens"] <= window


class VariantsMachine(RuleBasedStateMachine):
    client: ClassVar[TestClient]  # set by the test before the machine runs
    # Predicted 4xx responses seen over all runs, by status: the test checks each came up.
    rejections: ClassVar[dict[int, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.agent: str | None = None
        self.base: dict[str, Any] = {}
        self.variants: dict[str, dict[str, Any]] = {}  # id -> stored overrides
        self.deleted: set[str] = set()
        self.active: str | None = None
        self.slugs: dict[str, str] = {}  # id -> slug, deleted ones included

    # ------------------------------------------------------------------ helpers

    def call(self, method: str, path: str, expected: int, *, code: str | None = None, **kwargs: Any) -> Any:
        """Send a request; assert its status (and problem `code`) is the one the model predicts."""
        response = self.client.request(method, f"/v1/agents/{self.agent}{path}", **kwargs)
        assert response.status_code == expected, (method, path, kwargs.get("json"), response.text)
        if expected >= 400:
            self.rejections[expected] = self.rejections.get(expected, 0) + 1
        if code is not None:
            assert response.json()["code"] == code, response.text
        return response.json() if response.content else None

    def expected_for_check(self, ok: bool) -> tuple[int, str | None]:
        return (200, None) if ok else (422, "inconsistent_config")

    def any_variant(self, data: st.DataObject, *, live: bool = False) -> tuple[str, str]:
        """A variant the model knows (live or deleted): its id, and its id or slug to name it by."""
        variant = data.draw(st.sampled_from(sorted(self.variants) + ([] if live else sorted(self.deleted))))
        return variant, data.draw(st.sampled_from([variant, self.slugs[variant]]))

    # ------------------------------------------------------------------ rules

    @initialize(initial=st.lists(overrides, min_size=1, max_size=3))
    def create_agent(self, initial: list[dict[str, Any]]) -> None:
        """A fresh agent, and a few variants so every run has some to work on."""
        response = self.client.post("/v1/agents", json={"name": unique("stateful"), "config": START_CONFIG})
        assert response.status_code == 201, response.text
        self.agent = response.json()["id"]
        self.base = dict(START_CONFIG)
        for given in initial:
            self.create({"variant_name": unique("variant"), "overrides": given}, stored=given)

    @rule(data=st.data(), given=overrides, clone=st.sampled_from(["none", "base", "variant"]))
    def create_variant(self, data: st.DataObject, given: dict[str, Any], clone: str) -> None:
        body: dict[str, Any] = {"variant_name": unique("variant"), "overrides": given}
        start: dict[str, Any] = {}
        if clone == "base":
            body["clone_from"], start = "base", dict(self.base)
        elif clone == "variant" and self.variants:
            source, ref = self.any_variant(data, live=True)
            body["clone_from"], start = ref, self.variants[source]
        self.create(body, stored={**start, **given})

    def create(self, body: dict[str, Any], *, stored: dict[str, Any]) -> None:
        if consistent(resolve(stored, self.base)):
            variant = self.call("POST", "/variants", 201, json=body)
            assert variant["overrides"] == stored and variant["is_active"] is False
            self.variants[variant["id"]] = stored
            self.slugs[variant["id"]] = variant["slug"]
        else:
            self.call("POST", "/variants", 422, code="inconsistent_config", json=body)

    @precondition(lambda self: self.variants or self.deleted)
    @rule(data=st.data(), patch=override_patches)
    def patch_variant(self, data: st.DataObject, patch: dict[str, Any]) -> None:
        variant, ref = self.any_variant(data)
        path = f"/variants/{ref}"
        if variant in self.deleted:
            self.call("PATCH", path, 404, code="resource_missing", json={"overrides": patch})
            return
        current = self.variants[variant]
        after = merge(current, patch)
        status, code = self.expected_for_check(after == current or consistent(resolve(after, self.base)))
        body = self.call("PATCH", path, status, code=code, json={"overrides": patch})
        if status == 200:
            assert body["overrides"] == after
            self.variants[variant] = after

    @precondition(lambda self: self.variants or self.deleted)
    @rule(data=st.data())
    def activate(self, data: st.DataObject) -> None:
        self.activate_variant(*self.any_variant(data))

    def activate_variant(self, variant: str, ref: str) -> None:
        path = f"/variants/{ref}/activate"
        if variant in self.deleted:
            self.call("POST", path, 404, code="resource_missing")
            return
        ok = variant == self.active or consistent(resolve(self.variants[variant], self.base))
        status, code = self.expected_for_check(ok)
        body = self.call("POST", path, status, code=code)
        if status == 200:
            assert body["is_active"] is True
            self.active = variant

    def needy(self) -> list[str]:
        """Variants that inherit the window but need more than the base does."""

        def need(config: dict[str, Any]) -> int:
            return config["input_token_limit"] + config["max_tokens"]

        return sorted(
            v
            for v, o in self.variants.items()
            if "context_window" not in o and need(resolve(o, self.base)) > need(self.base)
        )

    @precondition(lambda self: self.needy())
    @rule(data=st.data(), slack=st.sampled_from([0, 100]))
    def squeeze_then_activate(self, data: st.DataObject, slack: int) -> None:
        """Shrink the window to what the base needs, then activate a variant that needs more.

        An inactive variant is not checked by the agent patch, so the patch is accepted
        (unless the active variant needs more too, which makes it a 422) and activation
        must then refuse the variant. Random steps rarely line this up.
        """
        variant = data.draw(st.sampled_from(self.needy()))
        need = self.base["input_token_limit"] + self.base["max_tokens"]
        self.patch_agent_config({"context_window": need + slack})
        self.activate_variant(variant, data.draw(st.sampled_from([variant, self.slugs[variant]])))

    @precondition(lambda self: self.variants or self.deleted)
    @rule(data=st.data())
    def deactivate(self, data: st.DataObject) -> None:
        variant, ref = self.any_variant(data)
        path = f"/variants/{ref}/deactivate"
        if variant in self.deleted:
            self.call("POST", path, 404, code="resource_missing")
            return
        body = self.call("POST", path, 200)
        assert body["is_active"] is False
        if self.active == variant:
            self.active = None

    @precondition(lambda self: self.variants or self.deleted)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        variant, ref = self.any_variant(data)
        path = f"/variants/{ref}"
        if variant in self.deleted:
            self.call("DELETE", path, 404, code="resource_missing")
        elif variant == self.active:
            self.call("DELETE", path, 409, code="variant_active")
        else:
            self.call("DELETE", path, 204)
            del self.variants[variant]
            self.deleted.add(variant)

    @precondition(lambda self: self.active is not None)
    @rule()
    def delete_the_active_variant(self) -> None:
        self.call("DELETE", f"/variants/{self.active}", 409, code="variant_active")

    @rule(patch=config_patches)
    def patch_agent(self, patch: dict[str, Any]) -> None:
        self.patch_agent_config(patch)

    def patch_agent_config(self, patch: dict[str, Any]) -> None:
        new_base = {**self.base, **patch}
        active_overrides = self.variants[self.active] if self.active else None
        ok = new_base == self.base or (consistent(new_base) and consistent(resolve(active_overrides, new_base)))
        status, code = self.expected_for_check(ok)
        body = self.call("PATCH", "", status, code=code, json={"config": patch})
        if status == 200:
            assert body["config"] == {**new_base, "params": {}, "tools": {}, "variables": {}}
            self.base = new_base

    # ------------------------------------------------------------------ invariants

    @invariant()
    def at_most_one_active_and_the_agent_agrees(self) -> None:
        if self.agent is None:
            return
        listed = self.call("GET", "/variants", 200, params={"is_active": "true", "limit": 100})["data"]
        assert len(listed) <= 1
        assert [v["id"] for v in listed] == ([self.active] if self.active else [])
        agent = self.call("GET", "", 200)
        assert agent["active_variant_id"] == self.active
        assert agent["variant_count"] == len(self.variants)
        assert agent["config"] == {**self.base, "params": {}, "tools": {}, "variables": {}}

    @invariant()
    def resolution_matches_the_model(self) -> None:
        if self.agent is None:
            return
        body = self.call("GET", "/resolved", 200)
        expected = resolve(self.variants[self.active] if self.active else None, self.base)
        assert {name: body[name] for name in FIELDS} == expected
        assert body["variant_id"] == self.active
        assert body["source"] == ("variant" if self.active else "agent")
        assert consistent(expected)


def test_variants_behave_like_the_model(live_url: str, live_key: str) -> None:
    app = create_app(settings_for_tests(database_url=live_url, db_pool_size=2, db_max_overflow=2))
    VariantsMachine.rejections = {}
    with TestClient(app, headers=bearer(live_key)) as client:
        VariantsMachine.client = client
        run_state_machine_as_test(
            VariantsMachine,
            settings=settings(
                max_examples=50,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            ),
        )
    # The machine reached every predicted rejection (each comes up dozens of times a run).
    assert set(VariantsMachine.rejections) == {404, 409, 422}, VariantsMachine.rejections
