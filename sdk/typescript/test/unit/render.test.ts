/**
 * `config.render(variables)` (contract 1.1, **Render**): the one implementation
 * (`templates.renderPrompt`) applied to a config's two templates and its declared variables,
 * its refusals thrown as the SDK throws the service's 422s (`RenderFailed`, a `ValidationFailed`).
 * As tests/sdk/test_render.py, with fast-check for Hypothesis.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import fc from "fast-check";

import { ResolvedAgentConfig } from "../../src/config.js";
import type { Scalar, Variable } from "../../src/config.js";
import { RenderFailed, ValidationFailed } from "../../src/errors.js";
import { RenderError, TemplateError, numberText, renderPrompt, valueText, variableNames } from "../../src/templates.js";

function config(system = "", user = "", variables: Record<string, Variable> = {}): ResolvedAgentConfig {
  return new ResolvedAgentConfig({
    agent_id: "agt_1",
    variant_id: null,
    model_provider: "openai",
    model_name: "gpt-4o",
    system_prompt: system,
    user_prompt_template: user,
    prompt_version: "",
    temperature: 1.0,
    max_tokens: 1024,
    context_window: 0,
    input_token_limit: 0,
    token_budget: 0,
    timeout_seconds: 60,
    max_retries: 2,
    params: {},
    tools: {},
    variables,
  });
}

/** The RenderFailed that rendering throws (fails when it renders). */
function refusal(subject: ResolvedAgentConfig, given: Record<string, unknown> = {}): RenderFailed {
  try {
    subject.render(given as Record<string, Scalar>);
  } catch (error) {
    assert.ok(error instanceof RenderFailed, String(error));
    return error;
  }
  assert.fail("rendered, but a refusal was expected");
}

test("render fills the declared variables and defaults", () => {
  const support = config(
    'You are {{ tone }} support for {{product}}. Reply as JSON: {"answer": "..."}',
    "{{question}} (plan: {{plan}}, seats: {{seats}}, beta: {{beta}}, ratio: {{ratio}})",
    {
      tone: { type: "string", default: "friendly" },
      product: { type: "string" },
      question: { type: "string", description: "the user's words" },
      plan: { type: "string", required: false },
      seats: { type: "integer" },
      beta: { type: "boolean", default: false },
      ratio: { type: "number", default: 1e-7 },
    },
  );
  const rendered = support.render({ product: "Acme", question: "Where is my order?", seats: 40.0 });
  assert.deepEqual(rendered, {
    system: 'You are friendly support for Acme. Reply as JSON: {"answer": "..."}',
    user: "Where is my order? (plan: , seats: 40, beta: false, ratio: 1e-7)",
  });
  assert.ok(Object.isFrozen(rendered));
  const terse = support.render({ tone: "terse", product: "A", question: "q", seats: 1, beta: true, plan: "pro" });
  assert.ok(terse.system.startsWith("You are terse support for A."));
});

test("JSON and single braces render unchanged", () => {
  for (const text of ['{"a": 1}', '{"a": {"b": [1, {"c": 2}]}}', "{", "}", "{x}", "{{ no close", "}}{{"]) {
    assert.deepEqual(config(text, text).render(), { system: text, user: text });
  }
});

test("a variable named like an Object property is a variable, not the prototype's", () => {
  const text: Variable = { type: "string" };
  const subject = config("{{constructor}} {{toString}}", "", { constructor: text, toString: { ...text, default: "t" } });
  assert.equal(subject.render({ constructor: "c" }).system, "c t");
  assert.equal(refusal(config("{{constructor}}", "", { constructor: text })).code, "missing_variable");
  assert.equal(refusal(config("{{hasOwnProperty}}")).code, "undeclared_variable");
});

test("a missing required variable is missing_variable, with the problem the service answers", () => {
  const error = refusal(config("{{a}} {{b}}", "", { a: { type: "string" }, b: { type: "string" } }), { a: "x" });
  assert.ok(error instanceof ValidationFailed);
  assert.equal(error.code, "missing_variable");
  assert.equal(error.status, 422);
  assert.deepEqual(error.errors, [{ param: "variables.b", message: "required, and has no default" }]);
  assert.deepEqual(error.problem, {
    type: "https://agent-variants.dev/problems/missing_variable",
    title: "Missing template variable",
    status: 422,
    detail: "variables.b: required, and has no default",
    code: "missing_variable",
    errors: [{ param: "variables.b", message: "required, and has no default" }],
  });
  assert.equal(error.message, "variables.b: required, and has no default");
});

test("every bad variable is named and the code is the first kind", () => {
  const declared: Record<string, Variable> = { a: { type: "string" }, n: { type: "integer" } };
  const error = refusal(config("{{a}}{{n}}", "", declared), { n: "40", extra: 1 });
  assert.equal(error.code, "missing_variable");
  assert.deepEqual(error.errors.map((e) => e.param), ["variables.a", "variables.extra", "variables.n"]);
  assert.equal(refusal(config("{{n}}", "", { n: { type: "integer" } }), { n: 1, extra: 1 }).code, "unknown_variable");
  const wrong = refusal(config("{{n}}", "", { n: { type: "integer" } }), { n: true });
  assert.equal(wrong.code, "validation_error");
  assert.equal(wrong.problem.title, "Invalid request");
  assert.deepEqual(wrong.errors, [{ param: "variables.n", message: "must be an integer" }]);
  const infinite = refusal(config("{{x}}", "", { x: { type: "number" } }), { x: Infinity });
  assert.deepEqual(infinite.errors, [{ param: "variables.x", message: "must be a finite number a double can hold" }]);
});

test("a config the service would not serve is refused naming the field", () => {
  const undeclared = refusal(config("Hi {{name}}", "{{q}}"));
  assert.equal(undeclared.code, "undeclared_variable");
  assert.equal(undeclared.problem.title, "Undeclared template variable");
  assert.deepEqual(undeclared.errors, [
    { param: "system_prompt", message: "'{{name}}' is not a declared variable" },
    { param: "user_prompt_template", message: "'{{q}}' is not a declared variable" },
  ]);
  const invalid = refusal(config("{{a.b}}", "{{q}}"));
  assert.equal(invalid.code, "invalid_template");
  assert.equal(invalid.problem.type, "https://agent-variants.dev/problems/invalid_template");
  assert.deepEqual(invalid.errors.map((e) => e.param), ["system_prompt", "user_prompt_template"]);
  assert.equal(
    invalid.errors[0]!.message,
    "'{{a.b}}' at character 0 is not a placeholder: write {{name}} with a name of letters, digits and _ (not starting with a digit)",
  );
});

test("a TemplateError's position counts characters, as the service does", () => {
  assert.throws(
    () => variableNames("漢字 😀 {{ 0 }}"),
    (error: unknown) => error instanceof TemplateError && error.position === 5 && error.text === " 0 ",
  );
});

test("an undefined value is left out, as JSON.stringify leaves it out of the service's request", () => {
  const subject = config("{{a}}", "", { a: { type: "string", default: "d" } });
  assert.equal(subject.render({ a: undefined } as unknown as Record<string, Scalar>).system, "d");
});

// Templates: text with braces of every kind around placeholders; some come out invalid
// (`{` then `{{a}}` reads as `{{{a}}`), and those must be refused as such.
const NAMES = fc.constantFrom("a", "b", "tone", "_x", "Q1");
const SPACES = fc.constantFrom("", " ", "  ");
const PLACEHOLDER = fc.tuple(NAMES, SPACES, SPACES).map(([name, left, right]) => `{{${left}${name}${right}}}`);
const TEXT = fc.constantFrom('{"a": 1}', "{", "}", "{x}", " ", "text", "}}", '{"k": {"n": [1]}}', "é", "\n", "😀");
const TEMPLATE = fc.array(fc.oneof(PLACEHOLDER, TEXT), { maxLength: 8 }).map((parts) => parts.join(""));
const VALUE: fc.Arbitrary<Scalar> = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.boolean(),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const KINDS = ["string", "number", "integer", "boolean"] as const;
const SPEC: fc.Arbitrary<Variable> = fc.record(
  {
    type: fc.constantFrom(...KINDS),
    required: fc.boolean(),
    default: VALUE,
    description: fc.string({ maxLength: 5 }),
  },
  { requiredKeys: ["type"] },
);
const OF_TYPE: Record<(typeof KINDS)[number], fc.Arbitrary<Scalar>> = {
  string: fc.string({ maxLength: 8 }),
  boolean: fc.boolean(),
  integer: fc.oneof(fc.maxSafeInteger(), fc.integer({ min: -99, max: 99 })),
  number: fc.oneof(fc.maxSafeInteger(), fc.double({ noNaN: true, noDefaultInfinity: true })),
};

test("property: config.render is renderPrompt (the same text, or the same refusal)", () => {
  const seen = new Map<string, number>();
  fc.assert(
    fc.property(
      TEMPLATE,
      TEMPLATE,
      fc.dictionary(NAMES, SPEC, { maxKeys: 3 }),
      fc.gen(),
      (system, user, extra, draw) => {
        let used: string[];
        try {
          used = [...variableNames(system), ...variableNames(user)];
        } catch (error) {
          assert.ok(error instanceof TemplateError);
          seen.set("invalid_template", (seen.get("invalid_template") ?? 0) + 1);
          assert.equal(refusal(config(system, user)).code, "invalid_template");
          return;
        }
        const declared: Record<string, Variable> = {};
        for (const name of used) declared[name] = draw(() => SPEC);
        Object.assign(declared, extra);
        const values: Record<string, Scalar> = {};
        for (const [name, spec] of Object.entries(declared)) {
          const how = draw(() => fc.constantFrom(...Array(6).fill("typed"), ...Array(3).fill("left out"), "any"));
          if (how === "typed") values[name] = draw(() => OF_TYPE[spec.type]);
          else if (how === "any") values[name] = draw(() => VALUE);
        }
        Object.assign(values, draw(() => fc.dictionary(fc.constantFrom("other", "zz"), VALUE, { maxKeys: 1 })));
        const subject = config(system, user, declared);
        let expected: { system: string; user: string };
        try {
          expected = renderPrompt({ system, user }, declared, values);
        } catch (error) {
          assert.ok(error instanceof RenderError);
          seen.set(error.code, (seen.get(error.code) ?? 0) + 1);
          const failed = refusal(subject, values);
          assert.equal(failed.code, error.code);
          assert.deepEqual(failed.errors, error.errors);
          assert.ok(failed.errors.every((e) => e.param.startsWith("variables.")));
          return;
        }
        seen.set("rendered", (seen.get("rendered") ?? 0) + 1);
        assert.deepEqual(subject.render(values), expected);
      },
    ),
    { numRuns: 400 },
  );
  // Every outcome was reached, so the property is not vacuous.
  for (const outcome of ["rendered", "invalid_template", "missing_variable", "unknown_variable", "validation_error"]) {
    assert.ok((seen.get(outcome) ?? 0) > 0, `${outcome} never happened: ${JSON.stringify([...seen])}`);
  }
});

test("property: text without placeholders renders as itself", () => {
  const text = fc
    .array(fc.constantFrom(..."{}[]\":, ab1\n".split("")), { maxLength: 40 })
    .map((chars) => chars.join(""))
    .filter((t) => !t.includes("{{"));
  fc.assert(fc.property(text, (t) => assert.deepEqual(config(t, t).render(), { system: t, user: t })));
});

test("property: defaults fill what is left out", () => {
  fc.assert(
    fc.property(VALUE, fc.constantFrom(...KINDS), (value, kind) => {
      const rendered = config("{{v}}", "[{{v}}]", { v: { type: kind, default: value } }).render();
      assert.deepEqual(rendered, { system: valueText(value), user: `[${valueText(value)}]` });
    }),
  );
});

test("property: a required variable left out is missing", () => {
  const required = SPEC.filter((spec) => spec.required !== false && !("default" in spec));
  fc.assert(
    fc.property(required, (spec) => {
      const error = refusal(config("{{v}}", "", { v: spec }));
      assert.equal(error.code, "missing_variable");
      assert.equal(error.errors[0]!.param, "variables.v");
    }),
  );
});

test("property: a number's text reads back as the same number, never -0, never NaN or Infinity", () => {
  fc.assert(
    fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (value) => {
      const text = numberText(value);
      assert.equal(Number(text), value === 0 ? 0 : value);
      assert.ok(!Object.is(Number(text), -0));
      assert.match(text, /^-?(0|[1-9][0-9]*)(\.[0-9]+)?(e[+-][0-9]+)?$|^-?[0-9]\.?[0-9]*e[+-][0-9]+$/);
      // A number renders as its text, whatever the variable's numeric type.
      const kind = Number.isInteger(value) ? "integer" : "number";
      assert.equal(config("{{x}}", "", { x: { type: kind } }).render({ x: value }).system, text);
    }),
  );
  for (const bad of [NaN, Infinity, -Infinity]) assert.throws(() => numberText(bad), RangeError);
});
