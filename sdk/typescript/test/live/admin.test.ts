/**
 * The admin namespaces against a real `serve` process (tests/sdk/test_typescript_sdk.py starts
 * it: `AV_BASE_URL`, `AV_ADMIN_KEY`). The server is shared by every file of test/live, so each
 * test makes its own agents, with a random suffix.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import { Admin } from "../../src/admin.js";
import type { Agent, AgentCreate } from "../../src/admin.js";
import { Conflict, NotFound, PreconditionFailed, Unauthorized, ValidationFailed } from "../../src/errors.js";
import { connection } from "../../src/http.js";

const baseUrl = process.env["AV_BASE_URL"];
const apiKey = process.env["AV_ADMIN_KEY"];
if (!baseUrl || !apiKey) {
  throw new Error("AV_BASE_URL and AV_ADMIN_KEY are needed (tests/sdk/test_typescript_sdk.py sets them)");
}

const admin = new Admin(connection({ baseUrl, apiKey, timeoutMs: 10_000 }));

function unique(stem: string): string {
  return `${stem}-${randomBytes(5).toString("hex")}`;
}

async function newAgent(overrides: Partial<AgentCreate> = {}): Promise<Agent> {
  const slug = unique("ts-admin");
  return admin.agents.create({
    name: slug,
    slug,
    config: { model_provider: "openai", model_name: "gpt-4o", system_prompt: "Be brief.", temperature: 0.5 },
    ...overrides,
  });
}

/** The error `promise` rejects with, checked to be a `kind`. */
async function failure<E extends Error>(promise: Promise<unknown>, kind: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof kind, `expected ${kind.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${kind.name}, it succeeded`);
}

test("agents: create, get, list, update; a stale ifMatch is 412 and changes nothing", async () => {
  const agent = await newAgent({ description: "first", metadata: { team: "support" } });
  assert.equal(agent.object, "agent");
  assert.match(agent.id, /^agt_/);
  assert.equal(agent.version, 1);
  assert.equal(agent.config.temperature, 0.5);
  assert.equal(agent.config.max_tokens, 1024); // the contract's default

  const byId = await admin.agents.get(agent.id);
  const bySlug = await admin.agents.get(agent.slug);
  assert.deepEqual(byId, bySlug);

  const page = await admin.agents.list({ limit: 100 });
  assert.equal(page.object, "list");
  assert.ok(page.data.some((a) => a.id === agent.id));

  const updated = await admin.agents.update(agent.slug, { config: { temperature: 0.2 } }, { ifMatch: agent.version });
  assert.equal(updated.version, 2);
  assert.equal(updated.config.temperature, 0.2);
  assert.equal(updated.description, "first");

  const stale = await failure(
    admin.agents.update(agent.slug, { config: { temperature: 0.9 } }, { ifMatch: agent.version }),
    PreconditionFailed,
  );
  assert.equal(stale.status, 412);
  assert.equal(stale.code, "precondition_failed");
  assert.equal((await admin.agents.get(agent.slug)).config.temperature, 0.2);

  const revisions = await admin.agents.revisions(agent.slug);
  assert.deepEqual(
    revisions.data.map((r) => r.action),
    ["update", "create"],
  );
  const first = revisions.data.at(-1);
  assert.ok(first);
  assert.equal((await admin.agents.revision(agent.slug, first.id)).id, first.id);
});

test("the same idempotency key returns the same object; without one, each create is new", async () => {
  const slug = unique("ts-idem");
  const body: AgentCreate = { name: slug, config: { model_provider: "openai", model_name: "gpt-4o" } };
  const key = unique("key");
  const first = await admin.agents.create(body, { idempotencyKey: key });
  const again = await admin.agents.create(body, { idempotencyKey: key });
  assert.equal(again.id, first.id);
  assert.equal(again.created_at, first.created_at);

  const changed = admin.agents.create({ ...body, name: `${slug} other` }, { idempotencyKey: key });
  const reused = await failure(changed, Conflict);
  assert.equal(reused.code, "idempotency_key_reused");

  const other = await admin.agents.create(body);
  assert.notEqual(other.id, first.id);
  assert.equal(other.slug, `${first.slug}-2`); // a derived slug that is taken gets a suffix
});

test("typed errors: NotFound, ValidationFailed naming each bad field, Conflict", async () => {
  const missing = await failure(admin.agents.get(unique("no-such-agent")), NotFound);
  assert.equal(missing.status, 404);
  assert.equal(missing.code, "resource_missing");

  const invalid = await failure(
    admin.agents.create({
      name: unique("ts-invalid"),
      config: { model_provider: "openai", model_name: "gpt-4o", temperature: 5, max_tokens: 0 },
    }),
    ValidationFailed,
  );
  assert.equal(invalid.status, 422);
  assert.deepEqual(invalid.errors.map((e) => e.param).sort(), ["config.max_tokens", "config.temperature"]);

  const agent = await newAgent();
  const taken = await failure(newAgent({ slug: agent.slug }), Conflict);
  assert.equal(taken.status, 409);
  assert.equal(taken.code, "slug_taken");

  // The compiler refuses such a body before the service can: the API's types are checked.
  // @ts-expect-error `max_tokens` is a number, and variants have no `name`
  const wrong: Parameters<typeof admin.variants.create>[1] = { name: "x", overrides: { max_tokens: "many" } };
  void wrong;

  const cloneOfNothing = admin.variants.create(agent.slug, { variant_name: "x", clone_from: "nope" });
  const variantMissing = await failure(cloneOfNothing, NotFound);
  assert.equal(variantMissing.code, "resource_missing");
  assert.deepEqual(
    variantMissing.errors.map((e) => e.param),
    ["clone_from"],
  );
});

test("variants: create, clone, activate, deactivate, diff, delete", async () => {
  const agent = await newAgent();
  const terse = await admin.variants.create(agent.slug, { variant_name: "Terse", overrides: { max_tokens: 256 } });
  assert.equal(terse.object, "variant");
  assert.equal(terse.slug, "terse");
  assert.deepEqual(terse.overrides, { max_tokens: 256 });
  assert.equal(terse.is_active, false);

  const clone = await admin.variants.create(agent.slug, {
    variant_name: "Terse cold",
    clone_from: terse.slug,
    overrides: { temperature: 0 },
  });
  assert.deepEqual(clone.overrides, { max_tokens: 256, temperature: 0 });
  assert.equal(clone.cloned_from?.source, "variant");
  assert.equal(clone.cloned_from?.variant_id, terse.id);

  const active = await admin.variants.activate(agent.slug, clone.slug, { ifMatch: clone.version });
  assert.equal(active.is_active, true);
  assert.equal((await admin.agents.get(agent.slug)).active_variant_id, clone.id);
  const resolved = await admin.agents.resolved(agent.slug, { explain: true });
  assert.equal(resolved.variant_id, clone.id);
  assert.equal(resolved.max_tokens, 256);

  const actives = await admin.variants.list(agent.slug, { isActive: true });
  assert.deepEqual(
    actives.data.map((v) => v.id),
    [clone.id],
  );
  const diff = await admin.variants.diff(agent.slug, clone.slug);
  assert.deepEqual(diff.changes.map((c) => c.field).sort(), ["max_tokens", "temperature"]);

  const inUse = await failure(admin.variants.delete(agent.slug, clone.slug), Conflict);
  assert.equal(inUse.code, "variant_active");

  const inactive = await admin.variants.deactivate(agent.slug, clone.slug);
  assert.equal(inactive.is_active, false);
  assert.equal((await admin.agents.get(agent.slug)).active_variant_id, null);

  const undone = await admin.agents.undo(agent.slug);
  assert.equal(undone.object, "undo");
  assert.equal((await admin.variants.get(agent.slug, clone.slug)).is_active, true);

  await admin.variants.delete(agent.slug, terse.slug);
  await failure(admin.variants.get(agent.slug, terse.slug), NotFound);
});

test("experiments: create, start, results, stop", async () => {
  const agent = await newAgent();
  const terse = await admin.variants.create(agent.slug, { variant_name: "Terse", overrides: { max_tokens: 256 } });
  const draft = await admin.experiments.create(agent.slug, {
    name: "terse vs base",
    arms: [
      { variant: "base", weight: 1 },
      { variant: terse.slug, weight: 1 },
    ],
  });
  assert.equal(draft.object, "experiment");
  assert.equal(draft.status, "draft");
  assert.equal(draft.kind, "experiment");

  const stopDraft = await failure(admin.experiments.stop(agent.slug, draft.id), Conflict);
  assert.equal(stopDraft.code, "invalid_status");

  const running = await admin.experiments.start(agent.slug, draft.id, { ifMatch: draft.version });
  assert.equal(running.status, "running");
  const listed = await admin.experiments.list(agent.slug, { status: "running" });
  assert.deepEqual(
    listed.data.map((e) => e.id),
    [draft.id],
  );

  const results = await admin.experiments.results(agent.slug, draft.id);
  assert.equal(results.object, "experiment_results");
  assert.equal(results.arms.length, 2);
  assert.equal(results.arms[0]?.outcomes, 0);
  assert.equal(results.arms[0]?.vs_control, null);

  const stopped = await admin.experiments.stop(agent.slug, draft.id);
  assert.equal(stopped.status, "stopped");
  const again = await failure(admin.experiments.start(agent.slug, draft.id), Conflict);
  assert.equal(again.code, "invalid_status");
});

test("keys: create (its secret once), get, list, revoke; a revoked key is refused", async () => {
  const name = unique("ts-key");
  const key = await admin.keys.create({ name, scope: "read" });
  assert.equal(key.object, "api_key");
  assert.equal(key.scope, "read");
  assert.ok(key.secret);

  const reader = new Admin(connection({ baseUrl, apiKey: key.secret, timeoutMs: 10_000 }));
  await reader.agents.list({ limit: 1 });

  const got = await admin.keys.get(name);
  assert.equal(got.id, key.id);
  assert.equal(got.secret, null);
  const page = await admin.keys.list({ limit: 100 });
  assert.ok(page.data.some((k) => k.id === key.id));

  await admin.keys.revoke(name);
  assert.ok((await admin.keys.get(key.id)).revoked_at);
  const refused = await failure(reader.agents.list({ limit: 1 }), Unauthorized);
  assert.equal(refused.status, 401);
});

test("environments and rules: a rule set in its own environment", async () => {
  const environment = await admin.environments.create({ name: unique("ts-env") });
  assert.equal(environment.object, "environment");
  const agent = await newAgent();
  const terse = await admin.variants.create(agent.slug, { variant_name: "Terse", overrides: { max_tokens: 256 } });

  const empty = await admin.rules.get(agent.slug, { environment: environment.slug });
  assert.equal(empty.version, 0);
  assert.deepEqual(empty.rules, []);
  const set = await admin.rules.replace(
    agent.slug,
    [{ name: "pro plan", when: [{ attribute: "plan", op: "eq", value: "pro" }], serve: { variant: terse.slug } }],
    { environment: environment.slug, ifMatch: empty.version },
  );
  assert.equal(set.version, 1);
  const pro = await admin.agents.resolved(agent.slug, { environment: environment.slug, attributes: { plan: "pro" } });
  assert.equal(pro.source, "rule");
  assert.equal(pro.max_tokens, 256);
  const elsewhere = await admin.agents.resolved(agent.slug, { attributes: { plan: "pro" } });
  assert.equal(elsewhere.source, "agent");

  await admin.rules.replace(agent.slug, [], { environment: environment.slug });
  await admin.environments.delete(environment.slug);
  await failure(admin.environments.get(environment.slug), NotFound);
});

test("the client carries the admin namespaces: what it creates, it resolves", async () => {
  const { AgentVariants } = await import("../../src/client.js");
  const client = new AgentVariants({ baseUrl, apiKey });
  try {
    const slug = unique("ts-client");
    const agent = await client.agents.create({ name: slug, slug, config: { model_provider: "openai", model_name: "gpt-4o" } });
    const variant = await client.variants.create(agent.slug, { variant_name: "terse", overrides: { max_tokens: 77 } });
    await client.variants.activate(agent.slug, variant.slug);
    const config = await client.resolve(agent.slug);
    assert.equal(config.variant_id, variant.id);
    assert.equal(config.max_tokens, 77);
    assert.equal((await client.agents.get(agent.id)).slug, slug);
  } finally {
    await client.close();
  }
});
