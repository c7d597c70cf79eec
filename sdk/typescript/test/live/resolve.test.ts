/**
 * Local resolution answers what the server answers: for random contexts (subject, attributes,
 * environment), `client.resolve()` from the bundle equals `POST /v1/agents/{agent}/resolve`,
 * over an agent with targeting rules, a running experiment of three arms and an active
 * variant in production, and a rollout, rules and another active variant in a second
 * environment. Every source (rule, experiment, rollout, variant) comes up.
 */

import assert from "node:assert/strict";
import { after, test } from "node:test";

import fc from "fast-check";

import { AgentVariants, ResolvedAgentConfig, ValidationFailed } from "../../src/index.js";
import type { ResolvedAgentConfigJSON } from "../../src/index.js";
import {
  ADMIN_KEY,
  BASE_URL,
  activate,
  api,
  createAgent,
  createEnvironment,
  createVariant,
  putRules,
  quietLogger,
  startSplit,
} from "./world.js";
import type { JSONObject } from "./world.js";

let agent: JSONObject;
let staging: string;
let client: AgentVariants;

// The setup runs once, and every test awaits it first: a root-level before() is not awaited
// before the first test on every Node this package supports (20.13's runner starts it late).
const ready = (async () => {
  agent = await createAgent("ts-resolve");
  const id = agent["id"] as string;
  for (const slug of ["one", "two", "three", "four"]) await createVariant(id, slug, { system_prompt: slug, temperature: 0.5 });
  staging = (await createEnvironment("ts-staging"))["slug"];

  // production: rules, then the active variant, then a running experiment of three arms.
  await putRules(id, [
    { name: "pro", when: [{ attribute: "plan", op: "eq", value: "pro" }], serve: { variant: "one" } },
    { name: "big", when: [{ attribute: "seats", op: "gte", value: 50 }, { attribute: "plan", op: "neq", value: "free" }], serve: { variant: "base" } },
    { name: "beta", when: [{ attribute: "subject", op: "starts_with", value: "beta-" }], serve: { variant: "three" } },
  ]);
  await activate(id, "two");
  await startSplit(id, {
    name: "three arms",
    arms: [
      { variant: "base", weight: 1 },
      { variant: "three", weight: 2 },
      { variant: "four", weight: 1 },
    ],
  });

  // staging: another active variant, a rule, and a rollout at 30 % that holds its step.
  await activate(id, "one", staging);
  await putRules(id, [{ name: "eu", when: [{ attribute: "region", op: "in", values: ["eu", "uk"] }], serve: { variant: "two" } }], staging);
  await startSplit(id, {
    kind: "rollout",
    name: "ship four",
    variant: "four",
    environment: staging,
    steps: [
      { percent: 30, hold_seconds: 3600 },
      { percent: 100, hold_seconds: 0 },
    ],
  });
  client = new AgentVariants({ baseUrl: BASE_URL, apiKey: ADMIN_KEY, logger: quietLogger() });
})();
ready.catch(() => undefined); // its failure is reported by each test that awaits it

after(async () => {
  await client?.close();
});

/** A config as compared: everything the service says of it but `provenance` (sent only with explain). */
function comparable(config: ResolvedAgentConfig): JSONObject {
  const { provenance: _, ...rest } = config.toJSON();
  return rest;
}

const context = fc.record(
  {
    subject: fc.oneof(
      fc.constantFrom("beta-1", "beta-zz", "user-1", "user-2"),
      fc.stringMatching(/^[A-Za-z0-9_.:@-]{1,24}$/),
      fc.string({ minLength: 1, maxLength: 12 }),
    ),
    plan: fc.constantFrom("free", "pro", "Pro", "team"),
    seats: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constantFrom("50", "49.5", "1e2", "x")),
    region: fc.constantFrom("eu", "uk", "us"),
    flag: fc.boolean(),
  },
  { requiredKeys: [] },
);

const environment = fc.constantFrom<"default" | "production" | "staging">("default", "production", "staging");

test("local resolution equals the server's POST .../resolve, in both environments; every source comes up", async () => {
  await ready;
  const seen = new Set<string>();
  const id = agent["id"] as string;
  await fc.assert(
    fc.asyncProperty(context, environment, async ({ subject, ...attributes }, where) => {
      const env = where === "default" ? undefined : where === "staging" ? staging : "production";
      const body: JSONObject = { attributes };
      if (subject !== undefined) body["subject"] = subject;
      if (env !== undefined) body["environment"] = env;
      const server = ResolvedAgentConfig.fromJSON((await api("POST", `/v1/agents/${id}/resolve`, body, { expect: 200 })) as ResolvedAgentConfigJSON);
      // By slug or id: both name the agent, and each is a copy of its own.
      const local = await client.resolve(subject === "user-1" ? (agent["slug"] as string) : id, { subject, attributes, environment: env });
      assert.deepEqual(comparable(local), comparable(server), JSON.stringify({ subject, attributes, env }));
      seen.add(local.source);
    }),
    {
      numRuns: 300,
      examples: [
        [{ plan: "pro" }, "default"],
        [{ subject: "user-2" }, "production"],
        [{}, "production"],
        [{ subject: "user-2" }, "staging"],
        [{ region: "eu" }, "staging"],
        [{}, "staging"],
      ],
    },
  );
  for (const source of ["rule", "experiment", "variant", "rollout"]) assert.ok(seen.has(source), `${source} never came up: ${[...seen]}`);
});

test("attributes the service would refuse are refused locally, each named", async () => {
  await ready;
  await assert.rejects(
    client.resolve(agent["id"] as string, { attributes: { subject: "x", "bad name": 1, ok: Number.NaN } }),
    (error: unknown) => {
      assert.ok(error instanceof ValidationFailed);
      const params = error.errors.map((e) => e.param).sort();
      assert.deepEqual(params, ["attributes.bad name", "attributes.ok", "attributes.subject"]);
      return true;
    },
  );
});
