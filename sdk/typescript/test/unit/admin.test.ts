/**
 * The admin namespaces' requests, against a recording `fetch` (no server): method, path,
 * query, headers and body of each call; and, at compile time, that their types are the
 * generated API's.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Admin, pages } from "../../src/admin.js";
import type { Agent, AgentCreate, Experiment, Page, ResponseBody, Variant } from "../../src/admin.js";
import { NotFound } from "../../src/errors.js";
import type { components } from "../../src/generated/openapi.js";
import { connection } from "../../src/http.js";

interface Sent {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: unknown;
}

/** An `Admin` whose requests are recorded and answered by `reply` (default: 200 `{}`). */
function recording(reply: (sent: Sent) => { status: number; body?: unknown } = () => ({ status: 200, body: {} })) {
  const sent: Sent[] = [];
  const fake: typeof fetch = async (input, init) => {
    const record: Sent = {
      method: init?.method ?? "GET",
      url: new URL(String(input)),
      headers: { ...(init?.headers as Record<string, string>) },
      body: init?.body === undefined ? undefined : JSON.parse(String(init.body)),
    };
    sent.push(record);
    const { status, body } = reply(record);
    const text = body === undefined ? null : JSON.stringify(body);
    return new Response(status === 204 ? null : text, { status, headers: { "Content-Type": "application/json" } });
  };
  const admin = new Admin(connection({ baseUrl: "http://av.test/", apiKey: "avk_test", fetch: fake }));
  return { admin, sent };
}

test("agents: create posts the body with an idempotency key, and the environment in the query", async () => {
  const { admin, sent } = recording(() => ({ status: 201, body: { object: "agent", slug: "bot" } }));
  const agent = await admin.agents.create(
    { name: "Bot", config: { model_provider: "openai", model_name: "gpt-4o" } },
    { idempotencyKey: "k1", environment: "staging", actor: "ada" },
  );
  assert.equal(agent.slug, "bot");
  const [call] = sent;
  assert.equal(call?.method, "POST");
  assert.equal(call?.url.pathname, "/v1/agents");
  assert.equal(call?.url.searchParams.get("environment"), "staging");
  assert.equal(call?.headers["Idempotency-Key"], "k1");
  assert.equal(call?.headers["X-Actor"], "ada");
  assert.equal(call?.headers["Authorization"], "Bearer avk_test");
  assert.deepEqual(call?.body, { name: "Bot", config: { model_provider: "openai", model_name: "gpt-4o" } });
});

test("a POST without a key gets one; a GET gets none", async () => {
  const { admin, sent } = recording();
  await admin.variants.activate("bot", "terse");
  await admin.agents.get("bot");
  assert.match(sent[0]?.headers["Idempotency-Key"] ?? "", /^sdk-/);
  assert.equal(sent[1]?.headers["Idempotency-Key"], undefined);
  assert.equal(sent[1]?.url.search, "");
});

test("ifMatch: a version becomes its strong ETag; ids and slugs are one path segment", async () => {
  const { admin, sent } = recording();
  await admin.agents.update("a/b", { name: "x" }, { ifMatch: 3 });
  await admin.variants.update("bot", "v 1", { overrides: { temperature: null } }, { ifMatch: '"4"' });
  assert.equal(sent[0]?.method, "PATCH");
  assert.equal(sent[0]?.url.pathname, "/v1/agents/a%2Fb");
  assert.equal(sent[0]?.headers["If-Match"], '"3"');
  assert.equal(sent[1]?.url.pathname, "/v1/agents/bot/variants/v%201");
  assert.equal(sent[1]?.headers["If-Match"], '"4"');
  assert.deepEqual(sent[1]?.body, { overrides: { temperature: null } });
});

test("list options become the API's query parameters (snake_case), unset ones are left out", async () => {
  const page = { object: "list", data: [], first_id: null, last_id: null, has_more: false };
  const { admin, sent } = recording(() => ({ status: 200, body: page }));
  await admin.variants.list("bot", { isActive: true, limit: 5 });
  await admin.agents.revisions("bot", { targetId: "var_1", after: "rev_9" });
  await admin.experiments.list("bot", { status: "running" });
  await admin.agents.resolved("bot", { subject: "u1", attributes: { plan: "pro", seats: 40 }, explain: true });
  const queries = sent.map((s) => Object.fromEntries(s.url.searchParams));
  assert.deepEqual(queries, [
    { is_active: "true", limit: "5" },
    { target_id: "var_1", after: "rev_9" },
    { status: "running" },
    { subject: "u1", explain: "true", "attr.plan": "pro", "attr.seats": "40" },
  ]);
});

test("actions and deletes: paths, bodies and 204s", async () => {
  const { admin, sent } = recording((s) => ({ status: s.method === "DELETE" ? 204 : 200, body: {} }));
  await admin.variants.restore("bot", "terse", "rev_1");
  await admin.variants.diff("bot", "terse");
  for (const action of ["start", "stop", "pause", "resume"] as const) await admin.experiments[action]("bot", "exp_1");
  await admin.agents.undo("bot", { environment: "staging" });
  assert.equal(await admin.agents.delete("bot", { purge: true }), undefined);
  assert.equal(await admin.keys.revoke("ci"), undefined);
  const when = [{ attribute: "plan", op: "eq" as const, value: "pro" }];
  const rule = { name: "pro", when, serve: { variant: "terse" } };
  await admin.rules.replace("bot", [rule], { ifMatch: 0 });
  const lines = sent.map((s) => `${s.method} ${s.url.pathname}${s.url.search}`);
  assert.deepEqual(lines, [
    "POST /v1/agents/bot/variants/terse/restore",
    "GET /v1/agents/bot/variants/terse/diff?against=base",
    "POST /v1/agents/bot/experiments/exp_1/start",
    "POST /v1/agents/bot/experiments/exp_1/stop",
    "POST /v1/agents/bot/experiments/exp_1/pause",
    "POST /v1/agents/bot/experiments/exp_1/resume",
    "POST /v1/agents/bot/undo?environment=staging",
    "DELETE /v1/agents/bot?purge=true",
    "DELETE /v1/keys/ci",
    "PUT /v1/agents/bot/rules",
  ]);
  assert.deepEqual(sent[0]?.body, { revision_id: "rev_1" });
  assert.equal(sent[9]?.headers["If-Match"], '"0"');
});

test("a problem answer is the typed error", async () => {
  const problem = { status: 404, code: "resource_missing", detail: "Agent 'nope' not found" };
  const { admin } = recording(() => ({ status: 404, body: problem }));
  await assert.rejects(admin.agents.get("nope"), (error: unknown) => {
    assert.ok(error instanceof NotFound);
    assert.equal(error.code, "resource_missing");
    return true;
  });
});

test("pages() walks a list to its end, one request a page", async () => {
  const { admin, sent } = recording((s) => {
    const after = s.url.searchParams.get("after");
    const data = after === null ? [{ id: "agt_2" }, { id: "agt_1" }] : [{ id: "agt_0" }];
    const body = { object: "list", data, first_id: data[0]?.id, last_id: data.at(-1)?.id, has_more: after === null };
    return { status: 200, body };
  });
  const ids: string[] = [];
  for await (const agent of pages((after) => admin.agents.list({ limit: 2, after }))) ids.push(agent.id);
  assert.deepEqual(ids, ["agt_2", "agt_1", "agt_0"]);
  assert.equal(sent.length, 2);
});

// ---- Compile time: the namespaces' types are the generated API's. ----

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function same<A, B>(proof: Equal<A, B>): void {
  void proof;
}

test("the exported names are the API's schemas and answers (checked by tsc)", () => {
  same<Agent, ResponseBody<"/v1/agents/{agent}", "get">>(true);
  same<Agent, ResponseBody<"/v1/agents", "post">>(true);
  same<Page<Agent>, components["schemas"]["Page_AgentRead_"]>(true);
  same<Variant, ResponseBody<"/v1/agents/{agent}/variants/{variant}/activate", "post">>(true);
  same<Experiment, ResponseBody<"/v1/agents/{agent}/experiments/{experiment}/start", "post">>(true);
  same<AgentCreate, components["schemas"]["AgentCreate"]>(true);

  const { admin } = recording();
  const config = { model_provider: "openai", model_name: "gpt-4o" };
  const good: AgentCreate = { name: "Bot", config: { ...config, temperature: 0.2 } };
  // @ts-expect-error `config` is required
  const noConfig: AgentCreate = { name: "Bot" };
  // @ts-expect-error the API takes no `colour`
  const unknownField: AgentCreate = { ...good, colour: "red" };
  // @ts-expect-error a temperature is a number
  void admin.agents.create({ name: "Bot", config: { ...config, temperature: "hot" } });
  // @ts-expect-error a variant is created with `variant_name`, not `name`
  void admin.variants.create("bot", { name: "terse" });
  // @ts-expect-error a key's scope is one of four
  void admin.keys.create({ name: "ci", scope: "root" });
  void [noConfig, unknownField];
});
