/**
 * The conformance cases (sdk/conformance/cases.json) every SDK must pass, run against this one:
 * every section, as tests/sdk/test_conformance.py runs them against the Python SDK.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { assign, bucket, rolloutArm } from "../../src/assignment.js";
import { Freshness, Local, resolveLocally } from "../../src/bundles.js";
import { choose, coalesce, coalesceKeyed } from "../../src/coalesce.js";
import { CONFIG_FIELDS } from "../../src/config.js";
import { firstMatch } from "../../src/rules.js";
import type { Attributes, Rule } from "../../src/rules.js";
import { RenderError, TemplateError, numberText, placeholders, renderPrompt } from "../../src/templates.js";
import type { VariableSpec } from "../../src/templates.js";

// The test process runs in sdk/typescript.
const CASES = JSON.parse(readFileSync("../conformance/cases.json", "utf8")) as Cases;

interface Cases {
  version: number;
  assignment: {
    experiments: { salt: string; subject: string; weights: number[]; bucket: number; arm: number }[];
    rollouts: { salt: string; subject: string; arms: Record<string, number> }[];
  };
  rules: { rules: Rule[]; subject: string | null; attributes: Attributes; match: string | null }[];
  order: {
    rules: Rule[];
    split: { salt: string; weights: number[] } | null;
    subject: string | null;
    attributes: Attributes;
    expected: { kind: "rule"; rule_id: string } | { kind: "split"; arm: number } | { kind: "plain" };
  }[];
  coalescing: {
    base: Record<string, unknown>;
    overrides: Record<string, unknown>;
    resolved: Record<string, unknown>;
    overridden: string[];
  }[];
  templates: {
    numbers: { value: number; text: string }[];
    placeholders: ({ template: string; placeholders: string[] } | { template: string; error: string; position: number })[];
    render: {
      templates: { system: string; user: string };
      declared: Record<string, VariableSpec>;
      variables: Record<string, unknown>;
      rendered?: { system: string; user: string };
      error?: string;
      errors?: { param: string; message: string }[];
    }[];
  };
}

/** Runs `check` on each case and says how many ran, so an empty section fails. */
function each<T>(cases: readonly T[] | undefined, check: (item: T) => void): void {
  assert.ok(Array.isArray(cases) && cases.length > 0, "no cases in this section");
  let ran = 0;
  for (const item of cases) {
    check(item);
    ran++;
  }
  assert.equal(ran, cases.length);
}

const byParam = (a: { param: string }, b: { param: string }): number => (a.param < b.param ? -1 : a.param > b.param ? 1 : 0);

test("the cases are the version this SDK reads", () => {
  assert.equal(CASES.version, 1);
});

test("assignment: experiments (bucket and arm)", () => {
  each(CASES.assignment.experiments, (c) => {
    assert.equal(bucket(c.salt, c.subject), c.bucket, JSON.stringify(c));
    assert.equal(assign(c.salt, c.subject, c.weights), c.arm, JSON.stringify(c));
  });
});

test("assignment: rollouts (the arm at each percent)", () => {
  each(CASES.assignment.rollouts, (c) => {
    const percents = Object.entries(c.arms);
    assert.ok(percents.length > 0);
    for (const [percent, arm] of percents) assert.equal(rolloutArm(c.salt, c.subject, Number(percent)), arm, JSON.stringify(c));
  });
});

test("rules: the first rule that holds", () => {
  each(CASES.rules, (c) => {
    const found = firstMatch(c.rules, c.subject, c.attributes);
    assert.equal(found === null ? null : found.id, c.match, JSON.stringify(c));
    if (found !== null) assert.ok(c.rules.includes(found), "the very rule object passed in");
  });
});

test("order: a rule, else the subject's arm of the split, else plain (choose)", () => {
  each(CASES.order, (c) => {
    const split = c.split === null ? null : { salt: c.split.salt, weights: c.split.weights, percent: null };
    const choice = choose(c.rules, split, c.subject, c.attributes);
    const got =
      choice.kind === "rule"
        ? { kind: "rule", rule_id: choice.rule.id }
        : choice.kind === "split"
          ? { kind: "split", arm: choice.arm }
          : { kind: "plain" };
    assert.deepEqual(got, c.expected, JSON.stringify(c));
  });
});

/** A `resolved_agent_config` object whose variant id says what served it. */
function servedConfig(variantId: string | null): Record<string, unknown> {
  return {
    agent_id: "agt_1",
    variant_id: variantId,
    model_provider: "p",
    model_name: "m",
    system_prompt: "",
    user_prompt_template: "",
    prompt_version: "",
    temperature: 1,
    max_tokens: 1024,
    context_window: 0,
    input_token_limit: 0,
    token_budget: 0,
    timeout_seconds: 60,
    max_retries: 2,
  };
}

test("order, through the SDK's own path: a bundle read by Local.of, answered by resolveLocally", () => {
  const log = { warn: (message: string) => assert.fail(message) };
  each(CASES.order, (c) => {
    const bundle: Record<string, unknown> = {
      etag: "e1",
      environment: "production",
      resolved: servedConfig(null),
      rules: c.rules.map((rule) => ({ ...rule, resolved: servedConfig(`rule:${rule.id}`) })),
    };
    if (c.split !== null) {
      const arms = c.split.weights.map((weight, arm) => ({ arm, weight, resolved: servedConfig(`arm:${arm}`) }));
      bundle["experiment"] = { id: "exp_1", salt: c.split.salt, status: "running", arms };
    }
    const config = resolveLocally(Local.of(bundle, new Freshness(), log), c.subject, c.attributes);
    let got: Record<string, unknown>;
    if (config.source === "rule") {
      got = { kind: "rule", rule_id: config.rule_id };
      assert.equal(config.variant_id, `rule:${config.rule_id}`);
    } else if (config.source === "experiment") {
      got = { kind: "split", arm: config.arm };
      assert.equal(config.variant_id, `arm:${config.arm}`);
    } else {
      got = { kind: "plain" };
      assert.equal(config.variant_id, null);
    }
    assert.deepEqual(got, c.expected, JSON.stringify(c));
  });
});

test("order: a rollout's split takes the arm at its percent", () => {
  each(CASES.assignment.rollouts, (c) => {
    for (const [percent, arm] of Object.entries(c.arms)) {
      const choice = choose([], { salt: c.salt, weights: [1, 1], percent: Number(percent) }, c.subject, {});
      assert.deepEqual(choice, { kind: "split", arm });
    }
  });
});

test("coalescing: the twelve, the keyed fields and what was overridden", () => {
  each(CASES.coalescing, (c) => {
    const { resolved, given } = coalesceKeyed(c.overrides, c.base);
    assert.deepEqual({ ...coalesce(c.overrides, c.base), ...resolved }, c.resolved, JSON.stringify(c));
    // As the Python test computes it: the twelve named in the overrides, and the keyed entries given.
    const fields: readonly string[] = CONFIG_FIELDS;
    const twelve = Object.keys(c.overrides).filter((name) => fields.includes(name));
    assert.deepEqual([...new Set([...twelve, ...given])].sort(), c.overridden, JSON.stringify(c));
  });
});

test("templates: numbers as ECMAScript's Number::toString", () => {
  each(CASES.templates.numbers, (c) => assert.equal(numberText(c.value), c.text, JSON.stringify(c)));
});

test("templates: placeholders, or the position of the invalid one", () => {
  each(CASES.templates.placeholders, (c) => {
    if ("error" in c) {
      assert.equal(c.error, "invalid_template");
      assert.throws(
        () => placeholders(c.template),
        (error: unknown) => error instanceof TemplateError && error.position === c.position,
        JSON.stringify(c),
      );
    } else {
      assert.deepEqual(placeholders(c.template).map((p) => p.name), c.placeholders, JSON.stringify(c));
    }
  });
});

test("templates: render, or every bad variable (as a set) under the first kind's code", () => {
  each(CASES.templates.render, (c) => {
    if (c.error !== undefined) {
      assert.throws(
        () => renderPrompt(c.templates, c.declared, c.variables),
        (error: unknown) => {
          assert.ok(error instanceof RenderError);
          assert.equal(error.code, c.error);
          assert.deepEqual([...error.errors].sort(byParam), c.errors);
          return true;
        },
        JSON.stringify(c),
      );
    } else {
      assert.deepEqual(renderPrompt(c.templates, c.declared, c.variables), c.rendered, JSON.stringify(c));
    }
  });
});
