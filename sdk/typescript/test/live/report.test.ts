/**
 * `report()` through a proxy that fails every other outcomes batch, in turn refused (503,
 * never forwarded: nothing stored) and lost (forwarded, so the server stored it, then the
 * answer lost: a 502, or the connection dropped): every outcome is stored exactly once,
 * because each batch keeps its `Idempotency-Key` across its retries. The figures are read
 * from the server's `GET .../usage` (exact counts and token sums). A batch with an invalid
 * item (a 422 naming `data[i]`) loses that item only.
 */

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { AgentVariants } from "../../src/index.js";
import { Proxy } from "./proxy.js";
import { ADMIN_KEY, BASE_URL, api, createAgent, createVariant, quietLogger } from "./world.js";

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Expected {
  id: string;
  outcomes: number;
  input_tokens: number;
  output_tokens: number;
  byVariant: Map<string | null, number>;
}

async function assertStored(expected: Expected): Promise<void> {
  const usage = await api("GET", `/v1/agents/${expected.id}/usage`);
  assert.deepEqual(
    { outcomes: usage["outcomes"], input_tokens: usage["input_tokens"], output_tokens: usage["output_tokens"] },
    { outcomes: expected.outcomes, input_tokens: expected.input_tokens, output_tokens: expected.output_tokens },
  );
  const byVariant = new Map<string | null, number>((usage["by_variant"] as { variant_id: string | null; outcomes: number }[]).map((row) => [row.variant_id, row.outcomes]));
  assert.deepEqual(byVariant, expected.byVariant);
}

test("2,500 outcomes through a proxy failing half the batches are each stored once", async () => {
  const agents: Expected[] = [];
  const variantIds: string[] = [];
  for (let i = 0; i < 2; i++) {
    const agent = await createAgent("ts-report");
    variantIds.push((await createVariant(agent["id"], "measured", { system_prompt: "measured" }))["id"]);
    agents.push({ id: agent["id"], outcomes: 0, input_tokens: 0, output_tokens: 0, byVariant: new Map() });
  }
  const proxy = await new Proxy(BASE_URL).start();
  proxy.outcomes = "alternate";
  const client = new AgentVariants({ baseUrl: proxy.url, apiKey: ADMIN_KEY, logger: quietLogger() });
  cleanups.push(() => proxy.stop(), () => client.close());

  const total = 2500; // 1,250 an agent: batches of 1,000 and 250 each
  for (let n = 0; n < total; n++) {
    const expected = agents[n % 2]!;
    const variant = n % 3 === 0 ? variantIds[n % 2]! : null;
    client.report(expected.id, {
      variant_id: variant,
      subject: `run-${n}`,
      input_tokens: n,
      output_tokens: 3 * n + 1,
      latency_ms: n / 4,
      success: n % 2 === 0,
    });
    expected.outcomes++;
    expected.input_tokens += n;
    expected.output_tokens += 3 * n + 1;
    expected.byVariant.set(variant, (expected.byVariant.get(variant) ?? 0) + 1);
  }
  const stats = await client.flush(30_000);
  assert.deepEqual(stats, { sent: total, pending: 0, dropped: 0, rejected: 0 });
  for (const expected of agents) await assertStored(expected);

  // Every kind of fault fired; each lost batch went again under its key and was answered
  // from it (replayed), and nothing else needed a replay.
  const kinds = new Set(proxy.faults.map(([kind]) => kind));
  assert.deepEqual([...kinds].sort(), ["lost_502", "lost_reset", "refused"], JSON.stringify(proxy.faults));
  const lost = proxy.faults.filter(([kind]) => kind !== "refused").map(([, key]) => key);
  const replayed = new Set(proxy.forwarded.filter((f) => f.replayed && f.status === 202).map((f) => f.key));
  for (const key of lost) {
    assert.ok(proxy.forwarded.filter((f) => f.key === key).length >= 2, key);
    assert.ok(replayed.has(key), key);
  }
  assert.deepEqual([...replayed].sort(), [...new Set(lost)].sort());
  assert.equal(new Set(proxy.forwarded.map((f) => f.key)).size, 4, "four batches, each under one key");

  await client.close();
  assert.deepEqual(client.reportStats(), { sent: total, pending: 0, dropped: 0, rejected: 0 });
  assert.throws(() => client.report(agents[0]!.id, { input_tokens: 1 }), /closed/);
});

test("an item the service names as invalid is rejected; the rest of its batch is stored", async () => {
  const agent = await createAgent("ts-report-422");
  const client = new AgentVariants({ baseUrl: BASE_URL, apiKey: ADMIN_KEY, logger: quietLogger() });
  cleanups.push(() => client.close());
  let tokens = 0;
  for (let n = 0; n < 10; n++) {
    if (n === 4) client.report(agent["id"], { input_tokens: -1, output_tokens: 1, latency_ms: 1 }); // 422: data[4].input_tokens
    client.report(agent["id"], { input_tokens: n, output_tokens: 1, latency_ms: 1 });
    tokens += n;
  }
  const stats = await client.flush(10_000);
  assert.deepEqual(stats, { sent: 10, pending: 0, dropped: 0, rejected: 1 });
  await assertStored({ id: agent["id"], outcomes: 10, input_tokens: tokens, output_tokens: 10, byVariant: new Map([[null, 10]]) });
});

test("report() checks field names and types where it is called", async () => {
  const client = new AgentVariants({ baseUrl: BASE_URL, apiKey: ADMIN_KEY, logger: quietLogger() });
  cleanups.push(() => client.close());
  assert.throws(() => client.report("a", { input_tokens: 1.5 }), TypeError);
  assert.throws(() => client.report("a", { success: 1 as unknown as boolean }), TypeError);
  assert.throws(() => client.report("a", { latency_ms: "3" as unknown as number }), TypeError);
  assert.throws(() => client.report("a", { latency_ms: Infinity }), RangeError);
  assert.throws(() => client.report("a", { tokens: 3 } as never), /unknown outcome field: tokens/);
  assert.deepEqual(client.reportStats(), { sent: 0, pending: 0, dropped: 0, rejected: 0 });
});

test("a full buffer drops and counts, never waits", async () => {
  const client = new AgentVariants({ baseUrl: BASE_URL, apiKey: ADMIN_KEY, bufferCapacity: 5, logger: quietLogger() });
  cleanups.push(() => client.close(0));
  for (let n = 0; n < 8; n++) client.report("nobody", { input_tokens: n });
  assert.deepEqual(client.reportStats(), { sent: 0, pending: 5, dropped: 3, rejected: 0 });
});
