/**
 * A change through the API reaches `resolve()` through the watch stream within a bound: 20
 * activations, each timed from the moment the API answered to the first `resolve()` that
 * returns the newly active variant, all within 2 s (the contract's propagation bound is 1 s;
 * the watch adds one hop).
 */

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { AgentVariants } from "../../src/index.js";
import { ADMIN_KEY, BASE_URL, activate, createAgent, createVariant, eventually, quietLogger } from "./world.js";
import type { JSONObject } from "./world.js";

const BOUND_MS = 2000;
let agent: JSONObject;
let variants: JSONObject[];
let client: AgentVariants;

// The setup runs once, and every test awaits it first: a root-level before() is not awaited
// before the first test on every Node this package supports (20.13's runner starts it late).
const ready = (async () => {
  agent = await createAgent("ts-propagation");
  variants = [];
  for (const slug of ["left", "right"]) variants.push(await createVariant(agent["id"], slug, { system_prompt: slug }));
  client = new AgentVariants({ baseUrl: BASE_URL, apiKey: ADMIN_KEY, logger: quietLogger() });
})();
ready.catch(() => undefined); // its failure is reported by each test that awaits it

after(async () => {
  await client?.close();
});

test("20 activations each reach resolve() within 2 s", async () => {
  await ready;
  const slug = agent["slug"] as string;
  assert.equal((await client.resolve(slug)).source, "agent");
  const took: number[] = [];
  for (let n = 0; n < 20; n++) {
    const variant = variants[n % 2]!;
    await activate(agent["id"], variant["id"]);
    const written = performance.now();
    await eventually(
      async () => ((await client.resolve(slug)).variant_id === variant["id"] ? true : undefined),
      BOUND_MS * 5, // past the bound, wait on, so the failure says by how much
      `activation ${n} reaching resolve()`,
      2,
    );
    took.push(performance.now() - written);
  }
  const sorted = [...took].sort((a, b) => a - b);
  console.log(`propagation: median ${sorted[10]!.toFixed(1)} ms, max ${sorted[19]!.toFixed(1)} ms`);
  assert.ok(sorted[19]! <= BOUND_MS, `slowest activation took ${sorted[19]!.toFixed(1)} ms: ${took.map((t) => t.toFixed(0))}`);
  const config = await client.resolve(slug);
  assert.equal(config.source, "variant");
  assert.equal(config.system_prompt, variants[1]!["slug"]);
});
