/**
 * The runtime with no server: bundles read into `Local` (rules, splits, statuses, percents),
 * `answer` in the contract's order, and the client against a fake `fetch` standing in for
 * the service (the watch replacing and dropping copies; outcome batches refused in part,
 * or for their `environment` by an older service).
 */

import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { test } from "node:test";

import { Freshness, Local, answer } from "../../src/bundles.js";
import { AgentVariants, NotFound, RateLimited, Unavailable, ValidationFailed } from "../../src/index.js";
import { environmentRefused, namedItems, outcomeOf, retryIn } from "../../src/outcomes.js";
import { assign, rolloutArm } from "../../src/assignment.js";

const AGENT_ID = "agt_01JDQ42D4F6H8K0M2P4R6T8V0X";
const EXPERIMENT_ID = "exp_01JDQ42D4F6H8K0M2P4R6T8V0Y";
const quiet = { warn: () => undefined };

function body(prompt: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    object: "resolved_agent_config",
    agent_id: AGENT_ID,
    agent_slug: "support-bot",
    variant_id: null,
    variant_slug: null,
    source: "agent",
    experiment_id: null,
    arm: null,
    environment: "production",
    rule_id: null,
    model_provider: "openai",
    model_name: "gpt-4o",
    system_prompt: prompt,
    user_prompt_template: "",
    prompt_version: "",
    temperature: 1,
    max_tokens: 1024,
    context_window: 0,
    input_token_limit: 0,
    token_budget: 0,
    timeout_seconds: 60,
    max_retries: 2,
    ...extra,
  };
}

function split(weights: number[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: EXPERIMENT_ID,
    salt: "s",
    kind: "experiment",
    status: "running",
    arms: weights.map((weight, arm) => ({ arm, weight, variant_id: arm ? `var_${arm}` : null, resolved: body(`arm ${arm}`) })),
    ...extra,
  };
}

function bundle(extra: Record<string, unknown> = {}, etag = "e1"): Record<string, unknown> {
  return { object: "resolution_bundle", agent_id: AGENT_ID, agent_slug: "support-bot", etag, environment: "production", rules: [], resolved: body("plain"), experiment: null, ...extra };
}

const local = (b: Record<string, unknown>): Local => Local.of(b, new Freshness(), quiet);

test("the contract's order: the first rule that holds, else the subject's arm, else the plain config", () => {
  const rules = [
    { id: "rul_1", name: "pro", when: [{ attribute: "plan", op: "eq", value: "pro" }], serve: { variant: "v" }, resolved: body("rule 1") },
    { id: "rul_2", name: "beta", when: [{ attribute: "subject", op: "starts_with", value: "beta" }], serve: { variant: "v" }, resolved: body("rule 2") },
  ];
  const copy = local(bundle({ rules, experiment: split([1, 3]) }));
  const ruled = answer(copy, "u1", null, { plan: "pro" });
  assert.deepEqual([ruled.system_prompt, ruled.source, ruled.rule_id, ruled.environment], ["rule 1", "rule", "rul_1", "production"]);
  assert.equal(answer(copy, "beta-7", null, undefined).rule_id, "rul_2");
  for (const subject of ["a", "b", "c", "d", "e"]) {
    const served = answer(copy, subject, null, { plan: "free" });
    const arm = assign("s", subject, [1, 3]);
    assert.deepEqual([served.system_prompt, served.source, served.arm, served.experiment_id], [`arm ${arm}`, "experiment", arm, EXPERIMENT_ID]);
  }
  assert.equal(answer(copy, null, null, { plan: "free" }), copy.plain);
  assert.equal(copy.plain.source, "agent");
});

test("splits: running and paused serve, the rest do not; a rollout's percent, from progress too; weights otherwise", () => {
  for (const status of ["running", "paused"]) assert.notEqual(local(bundle({ experiment: split([1, 1], { status }) })).split, null);
  for (const status of ["draft", "stopped", "completed", "rolled_back"]) assert.equal(local(bundle({ experiment: split([1, 1], { status }) })).split, null);
  const direct = local(bundle({ experiment: split([1, 1], { kind: "rollout", percent: 30 }) }));
  const progress = local(bundle({ experiment: split([1, 1], { kind: "rollout", progress: { step: 0, percent: 30 } }) }));
  for (const copy of [direct, progress]) {
    assert.equal(copy.split?.spec.percent, 30);
    for (const subject of ["a", "b", "c", "d", "e", "f"]) {
      const served = answer(copy, subject, null, undefined);
      assert.equal(served.arm, rolloutArm("s", subject, 30));
      assert.equal(served.source, "rollout");
    }
  }
  assert.equal(local(bundle({ experiment: split([3, 1], { kind: "rollout" }) })).split?.spec.percent, null);
  assert.equal(local(bundle({ experiment: split([0, 0]) })).split, null);
});

test("answer(): bad attributes are named, a stale copy is Unavailable", () => {
  const copy = local(bundle());
  assert.throws(
    () => answer(copy, null, null, { subject: "x", ok: 1 }),
    (error: unknown) => error instanceof ValidationFailed && error.errors.map((e) => e.param).join() === "attributes.subject",
  );
  copy.freshness.confirmed -= 5000;
  assert.throws(() => answer(copy, null, 4000, undefined), Unavailable);
  assert.equal(answer(copy, null, 6000, undefined), copy.plain);
});

test("outcomes: config fills what served the run; names and types are checked", () => {
  const served = local(bundle({ experiment: split([1, 1]) }));
  const config = answer(served, "b", null, undefined);
  assert.deepEqual(outcomeOf({ config, input_tokens: 1, subject: "b", score: undefined }), {
    input_tokens: 1,
    subject: "b",
    variant_id: config.variant_id,
    experiment_id: EXPERIMENT_ID,
    environment: "production",
  });
  assert.deepEqual(outcomeOf({ input_tokens: 2, variant_id: "var_x" }), { input_tokens: 2, variant_id: "var_x" });
  assert.deepEqual(outcomeOf({}), { variant_id: null });
  assert.throws(() => outcomeOf({ output_tokens: 1n as unknown as number }), TypeError);
  assert.throws(() => outcomeOf({ score: Number.NaN }), RangeError);
});

test("outcomes: which refusals name items, which mean an older service, which are retried", () => {
  const invalid = new ValidationFailed("bad", { status: 422, problem: { errors: [{ param: "data[3].input_tokens", message: "x" }, { param: "data[9].x", message: "y" }, { param: "name", message: "z" }] } });
  assert.deepEqual([...namedItems(invalid, 5)], [3]);
  const older = new ValidationFailed("bad", { status: 422, problem: { errors: [{ param: "data[0].environment", message: "Unknown field" }] } });
  assert.ok(environmentRefused(older));
  const missing = new ValidationFailed("bad", { status: 422, problem: { errors: [{ param: "data[0].environment", message: "Environment 'x' not found" }] } });
  assert.ok(!environmentRefused(missing));
  assert.ok(retryIn(new Unavailable("down"), 1, 200)! > 0);
  assert.ok(retryIn(new RateLimited("slow", { status: 429, retryAfter: 3 }), 1, 200)! >= 3000);
  assert.equal(retryIn(new NotFound("gone", { status: 404, problem: { code: "resource_missing" } }), 1, 200), null);
  assert.ok(retryIn(new NotFound("proxy", { status: 404 }), 1, 200)! > 0);
  assert.ok(retryIn(new Unavailable("bug", { status: 500 }), 4, 200)! > 0);
  assert.equal(retryIn(new Unavailable("bug", { status: 500 }), 5, 200), null);
});

/** A fake service: bundles by ETag, one watch stream the test writes to, outcome POSTs answered by `outcomes`. */
class FakeService {
  current = bundle();
  gone = false;
  stream: ReadableStreamDefaultController<Uint8Array> | null = null;
  watches: (string | null)[] = [];
  posts: { key: string; items: Record<string, unknown>[] }[] = [];
  outcomes: (items: Record<string, unknown>[]) => [number, unknown] = () => [202, {}];

  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const headers = new Headers(init?.headers);
    const problem = (status: number, code: string): Response =>
      new Response(JSON.stringify({ status, code, detail: code }), { status, headers: { "content-type": "application/problem+json" } });
    if (init?.method === "POST") {
      const items = (JSON.parse(String(init.body)) as { data: Record<string, unknown>[] }).data;
      this.posts.push({ key: headers.get("idempotency-key") ?? "", items });
      const [status, answer] = this.outcomes(items);
      return new Response(JSON.stringify(answer), { status, headers: { "content-type": "application/json" } });
    }
    if (this.gone) return problem(404, "resource_missing");
    if (url.pathname.endsWith("/bundle/watch")) {
      this.watches.push(headers.get("last-event-id"));
      const stream = new ReadableStream<Uint8Array>({ start: (controller) => void (this.stream = controller) });
      init?.signal?.addEventListener("abort", () => this.stream?.error(new Error("aborted")));
      return new Response(stream, { status: 200, headers: { "content-type": "text/event-stream" } });
    }
    if (headers.get("if-none-match") === `"${this.current["etag"]}"`) return new Response(null, { status: 304 });
    return new Response(JSON.stringify(this.current), { status: 200, headers: { "content-type": "application/json" } });
  };

  send(text: string): void {
    this.stream?.enqueue(new TextEncoder().encode(text));
  }
}

async function until(probe: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = performance.now() + 3000;
  while (!(await probe())) {
    if (performance.now() > deadline) assert.fail(what);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test("the watch replaces the copy, its deleted event drops it", async () => {
  const service = new FakeService();
  const client = new AgentVariants({ baseUrl: "http://fake.test", fetch: service.fetch as typeof fetch, logger: quiet });
  try {
    assert.equal((await client.resolve("support-bot")).system_prompt, "plain");
    await until(() => service.watches.length === 1, "the watch opening");
    assert.deepEqual(service.watches, ["e1"]);
    const next = bundle({ resolved: body("next") }, "e2");
    // Split anywhere, CRLF line ends: the parser's business.
    const event = `event: bundle\r\nid: e2\r\ndata: ${JSON.stringify(next)}\r\n\r\n`;
    service.send(event.slice(0, 17));
    service.send(event.slice(17));
    await until(async () => (await client.resolve("support-bot")).system_prompt === "next", "the new bundle served");
    service.gone = true;
    service.send(`event: deleted\ndata: {"agent_id": "${AGENT_ID}"}\n\n`);
    await until(
      () => client.resolve("support-bot").then(() => false, (error: unknown) => error instanceof NotFound),
      "NotFound once the copy is dropped",
    );
  } finally {
    await client.close();
  }
  await assert.rejects(client.resolve("support-bot"), /closed/);
});

test("outcomes: named items are rejected and the rest re-sent under a new key; an older service gets them without environment", async () => {
  const service = new FakeService();
  const client = new AgentVariants({ baseUrl: "http://fake.test", fetch: service.fetch as typeof fetch, logger: quiet, environment: "staging" });
  try {
    service.outcomes = (items) => {
      if (items.some((item) => "environment" in item)) {
        return [422, { status: 422, code: "validation_error", errors: items.map((_, i) => ({ param: `data[${i}].environment`, message: "Unknown field" })) }];
      }
      const bad = items.findIndex((item) => item["input_tokens"] === -1);
      if (bad >= 0) return [422, { status: 422, code: "validation_error", errors: [{ param: `data[${bad}].input_tokens`, message: "must be >= 0" }] }];
      return [202, {}];
    };
    for (let n = 0; n < 5; n++) client.report("support-bot", { input_tokens: n === 2 ? -1 : n, output_tokens: 1, latency_ms: 1 });
    assert.deepEqual(await client.flush(3000), { sent: 4, pending: 0, dropped: 0, rejected: 1 });
    assert.equal(service.posts.length, 3);
    assert.ok(service.posts[0]!.items.every((item) => item["environment"] === "staging"));
    assert.equal(new Set(service.posts.map((p) => p.key)).size, 3, "a new key for every new body");
    assert.deepEqual(service.posts[2]!.items.map((item) => item["input_tokens"]), [0, 1, 3, 4]);
  } finally {
    await client.close();
  }
});

test("outcomes go out within a second unasked, and at once when 1,000 are waiting", async () => {
  const service = new FakeService();
  const client = new AgentVariants({ baseUrl: "http://fake.test", fetch: service.fetch as typeof fetch, logger: quiet });
  try {
    client.report("support-bot", { input_tokens: 1, output_tokens: 1, latency_ms: 1 });
    const reported = performance.now();
    await until(() => service.posts.length === 1, "one outcome sent unasked");
    const waited = performance.now() - reported;
    // At least every second; the slack is for a loaded machine (the suite runs in parallel).
    assert.ok(waited <= 2000, `${waited} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50)); // a new second begins
    const before = performance.now();
    for (let n = 0; n < 1000; n++) client.report("support-bot", { input_tokens: n, output_tokens: 1, latency_ms: 1 });
    await until(() => service.posts.length === 2, "a full batch sent");
    // Woken by the full batch, not by the next tick of the second (~950 ms away).
    assert.ok(performance.now() - before < 900, `a full batch waited ${performance.now() - before} ms`);
    assert.equal(service.posts[1]!.items.length, 1000);
    await until(() => client.reportStats().sent === 1001, "the batch settled");
    assert.deepEqual(client.reportStats(), { sent: 1001, pending: 0, dropped: 0, rejected: 0 });
  } finally {
    await client.close();
  }
});

test("requests leave no listener behind on the client's long-lived signals", async () => {
  const service = new FakeService();
  // maxStaleness 0.02 s: a revalidation every 10 ms, each linked to the copy's signal.
  const client = new AgentVariants({ baseUrl: "http://fake.test", fetch: service.fetch as typeof fetch, logger: quiet, maxStaleness: 0.02 });
  try {
    await client.resolve("support-bot");
    for (let n = 0; n < 30; n++) {
      client.report("support-bot", { input_tokens: n, output_tokens: 1, latency_ms: 1 });
      await client.flush();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // Internals on purpose: what a leak would grow.
    const copy = client["bundles"]["copies"].get(null)!.get("support-bot")!;
    const sender = client["sender"]!["controller"];
    assert.equal(service.posts.length, 30); // each flush above sent one batch
    assert.ok(getEventListeners(copy.signal, "abort").length <= 3, `${getEventListeners(copy.signal, "abort").length} listeners on a copy's signal`);
    assert.ok(getEventListeners(sender.signal, "abort").length <= 3, `${getEventListeners(sender.signal, "abort").length} listeners on the sender's signal`);
  } finally {
    await client.close();
  }
});
