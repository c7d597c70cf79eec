/**
 * Outages, through a proxy between the SDK and the server that a test cuts: the last bundle
 * keeps being served; with `maxStaleness` resolve() throws `Unavailable` past the bound;
 * changes made meanwhile arrive once the proxy is back (the watch reconnects with
 * `Last-Event-ID`, and revalidates); a stream that stays open but says nothing does not pass
 * a stale copy off as fresh; a proxy's HTML 404 is an outage, while the service saying the
 * agent is gone drops the copy.
 */

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { AgentVariants, NotFound, Unavailable } from "../../src/index.js";
import { Proxy } from "./proxy.js";
import { ADMIN_KEY, BASE_URL, activate, api, createAgent, createVariant, eventually, eventuallyThrows, quietLogger } from "./world.js";
import type { JSONObject } from "./world.js";

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function world(options: { maxStaleness?: number } = {}): Promise<{
  agent: JSONObject;
  variants: JSONObject[];
  proxy: Proxy;
  client: AgentVariants;
}> {
  const agent = await createAgent("ts-outage");
  const variants: JSONObject[] = [];
  for (const slug of ["before", "during"]) variants.push(await createVariant(agent["id"], slug, { system_prompt: slug }));
  await activate(agent["id"], "before");
  const proxy = await new Proxy(BASE_URL).start();
  const client = new AgentVariants({ baseUrl: proxy.url, apiKey: ADMIN_KEY, timeoutMs: 2000, logger: quietLogger(), ...options });
  cleanups.push(() => proxy.stop(), () => client.close());
  return { agent, variants, proxy, client };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test("while connections are refused the last bundle is served; what changed meanwhile arrives after, by Last-Event-ID", async () => {
  const { agent, variants, proxy, client } = await world();
  const slug = agent["slug"] as string;
  const first = await client.resolve(slug);
  assert.equal(first.variant_id, variants[0]!["id"]);
  const etag = client["bundles"].local(slug, null)!.etag;
  await eventually(async () => (proxy.streamIds.length ? true : undefined), 2000, "the watch opening");

  await proxy.refuse();
  await activate(agent["id"], "during"); // straight to the server: the SDK cannot hear of it
  for (let n = 0; n < 10; n++) {
    assert.equal((await client.resolve(slug)).variant_id, variants[0]!["id"], "served from the last bundle");
    await sleep(100);
  }
  const during = proxy.streamIds.length;
  const passedBefore = proxy.passed.length;
  await proxy.restore();
  const back = performance.now();
  await eventually(async () => ((await client.resolve(slug)).variant_id === variants[1]!["id"] ? true : undefined), 15_000, "the change arriving");
  console.log(`the change arrived ${(performance.now() - back).toFixed(0)} ms after the proxy came back`);
  // Every watch named the bundle it held; the change came by a watch that named the old one
  // (the server sent what changed since), or by a revalidation that found it first.
  const named = proxy.streamIds.slice(during);
  assert.ok(named.length > 0 && proxy.streamIds.every((id) => id !== null), JSON.stringify(proxy.streamIds));
  const revalidated = proxy.passed.slice(passedBefore).some(([method, path, status]) => method === "GET" && /\/bundle(\?|$)/.test(path) && status === 200);
  assert.ok(named.includes(etag) || revalidated, JSON.stringify({ etag, named }));
});

test("with maxStaleness, resolve() throws Unavailable once the copy is older than the bound, and serves again after", async () => {
  const { agent, variants, proxy, client } = await world({ maxStaleness: 1 });
  const slug = agent["slug"] as string;
  await client.resolve(slug);
  await sleep(1500); // past the bound, yet still fresh: the watch and revalidation vouch for it
  assert.equal((await client.resolve(slug)).variant_id, variants[0]!["id"]);

  proxy.cut();
  const cut = performance.now();
  assert.equal((await client.resolve(slug)).variant_id, variants[0]!["id"]);
  await eventuallyThrows(() => client.resolve(slug), Unavailable, 3000, "Unavailable past maxStaleness");
  const after = performance.now() - cut;
  console.log(`Unavailable ${after.toFixed(0)} ms after the cut (maxStaleness 1 s)`);
  assert.ok(after <= 1000 + 200, `${after} ms`);

  await activate(agent["id"], "during");
  proxy.mode = "pass";
  await eventually(
    async () => {
      try {
        return (await client.resolve(slug)).variant_id === variants[1]!["id"] ? true : undefined;
      } catch {
        return undefined;
      }
    },
    15_000,
    "fresh again, with the change",
  );
});

test("a stream that is held open but silent does not keep a stale copy: revalidation brings changes", async () => {
  const { agent, variants, proxy, client } = await world({ maxStaleness: 2 });
  proxy.mode = "hold_streams";
  const slug = agent["slug"] as string;
  await client.resolve(slug);
  await activate(agent["id"], "during");
  const written = performance.now();
  await eventually(async () => ((await client.resolve(slug)).variant_id === variants[1]!["id"] ? true : undefined), 4000, "the change by revalidation");
  console.log(`a silent stream: the change arrived ${(performance.now() - written).toFixed(0)} ms later by revalidation`);
  // And the copy stays fresh the whole time (revalidations vouch for it).
  for (let n = 0; n < 5; n++) {
    await client.resolve(slug);
    await sleep(500);
  }
  assert.ok(proxy.passed.some(([method, path, status]) => method === "GET" && path.includes("/bundle") && status === 304), "a 304 revalidation");
});

test("a proxy's HTML 404 is an outage (the copy is served), the service's 404 is not", async () => {
  const { agent, variants, proxy, client } = await world();
  const slug = agent["slug"] as string;
  await client.resolve(slug);
  proxy.cut();
  proxy.mode = "html_404";
  await sleep(1500); // a few reconnects and revalidations meet the HTML 404
  assert.equal((await client.resolve(slug)).variant_id, variants[0]!["id"]);

  // Archived while the SDK cannot hear: once back, the watch's 404 resource_missing drops the copy.
  await api("DELETE", `/v1/agents/${agent["id"]}`, undefined, { expect: 204 });
  proxy.mode = "pass";
  await eventuallyThrows(() => client.resolve(slug), NotFound, 15_000, "NotFound after the agent was archived during the outage");
});

test("archiving the agent drops the copy at once (event: deleted): the next resolve() says NotFound", async () => {
  const { agent, client } = await world();
  const slug = agent["slug"] as string;
  await client.resolve(slug);
  await client.resolve(agent["id"]); // a second copy, by id
  await api("DELETE", `/v1/agents/${agent["id"]}`, undefined, { expect: 204 });
  const archived = performance.now();
  for (const ref of [slug, agent["id"] as string]) {
    await eventuallyThrows(() => client.resolve(ref), NotFound, 3000, `NotFound for ${ref}`);
  }
  console.log(`both copies dropped ${(performance.now() - archived).toFixed(0)} ms after the archive`);
});
