/**
 * The live tests' world: the server the pytest harness started (`AV_BASE_URL`, with an admin
 * key in `AV_ADMIN_KEY`), and plain `fetch` calls to its admin API to build agents, variants,
 * environments, rules and splits. Every name carries a random suffix: the server is shared by
 * the files run by one pytest worker.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

export const BASE_URL = process.env["AV_BASE_URL"] ?? "";
export const ADMIN_KEY = process.env["AV_ADMIN_KEY"] ?? "";
assert.ok(BASE_URL && ADMIN_KEY, "AV_BASE_URL and AV_ADMIN_KEY must be set (the pytest harness sets them)");

// Admin API bodies, read loosely: the tests check what matters of them.
export type JSONObject = Record<string, any>;

export function unique(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

/** One admin call; its JSON body, after checking the status is `expect`. */
export async function api(
  method: string,
  path: string,
  body?: unknown,
  options: { expect?: number; query?: Record<string, string> } = {},
): Promise<JSONObject> {
  const search = options.query ? "?" + new URLSearchParams(options.query).toString() : "";
  const init: RequestInit = { method, headers: { Authorization: `Bearer ${ADMIN_KEY}` } };
  if (body !== undefined) {
    init.headers = { ...init.headers, "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${BASE_URL}${path}${search}`, init);
  const text = await response.text();
  const expected = options.expect ?? (method === "POST" && !path.includes("/resolve") && !/\/(activate|start|deactivate|stop)$/.test(path) ? 201 : 200);
  assert.equal(response.status, expected, `${method} ${path}${search} answered ${response.status}: ${text}`);
  return text ? (JSON.parse(text) as JSONObject) : {};
}

/** A config of an uncatalogued model (no catalog limits apply), `prompt` telling configs apart. */
export function config(prompt: string): JSONObject {
  return { model_provider: "test-provider", model_name: "test-model", system_prompt: prompt };
}

export async function createAgent(prefix: string): Promise<JSONObject> {
  return api("POST", "/v1/agents", { name: unique(prefix), config: config("base") });
}

export async function createVariant(agent: string, slug: string, overrides: JSONObject): Promise<JSONObject> {
  return api("POST", `/v1/agents/${agent}/variants`, { variant_name: slug, slug, overrides });
}

export async function createEnvironment(prefix: string): Promise<JSONObject> {
  const slug = unique(prefix);
  return api("POST", "/v1/environments", { name: slug, slug });
}

export async function activate(agent: string, variant: string, environment?: string): Promise<JSONObject> {
  return api("POST", `/v1/agents/${agent}/variants/${variant}/activate`, undefined, environment ? { query: { environment } } : {});
}

export async function putRules(agent: string, rules: unknown[], environment?: string): Promise<JSONObject> {
  return api("PUT", `/v1/agents/${agent}/rules`, { rules }, environment ? { query: { environment } } : {});
}

/** A started experiment or rollout (`body` as `POST .../experiments` takes it). */
export async function startSplit(agent: string, body: JSONObject): Promise<JSONObject> {
  const draft = await api("POST", `/v1/agents/${agent}/experiments`, body);
  // An experiment lives in its environment: its routes name it (the default is production).
  const query = typeof body["environment"] === "string" ? { query: { environment: body["environment"] as string } } : {};
  return api("POST", `/v1/agents/${agent}/experiments/${draft["id"]}/start`, undefined, query);
}

/** Poll `probe` every `everyMs` until it returns something other than undefined; throws past `withinMs`. */
export async function eventually<T>(probe: () => Promise<T | undefined>, withinMs: number, what: string, everyMs = 5): Promise<T> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) assert.fail(`not within ${withinMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Wait until `call` throws, and check what it throws is a `kind`. */
export async function eventuallyThrows(
  call: () => Promise<unknown>,
  kind: new (...args: never[]) => Error,
  withinMs: number,
  what: string,
): Promise<void> {
  await eventually(
    async () => {
      try {
        await call();
        return undefined;
      } catch (error) {
        assert.ok(error instanceof kind, String(error));
        return true;
      }
    },
    withinMs,
    what,
  );
}

/** A logger that keeps what the SDK says (the tests' output stays readable; a test may look). */
export function quietLogger(): { warn(message: string): void; lines: string[] } {
  const lines: string[] = [];
  return { warn: (message: string) => void lines.push(message), lines };
}
