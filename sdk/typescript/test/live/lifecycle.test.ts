/**
 * The client and the life of a process, in child processes of their own: after `close()`
 * nothing of the SDK keeps Node running (its watches end, its timers are cleared or unref'd);
 * a program that only reported and never closed its client still exits, and its outcomes
 * are sent first (the client closes itself at `beforeExit`).
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";

import { ADMIN_KEY, BASE_URL, api, createAgent } from "./world.js";

const INDEX = new URL("../../src/index.js", import.meta.url).href;

/** Run `body` as an ES module in a child Node (with `AgentVariants` imported); its exit code and how long it ran. */
async function run(body: string, limitMs: number): Promise<{ code: number | null; ms: number; output: string }> {
  const script = `import { AgentVariants } from ${JSON.stringify(INDEX)};\n${body}`;
  const began = performance.now();
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    env: { ...process.env, AV_BASE_URL: BASE_URL, AV_ADMIN_KEY: ADMIN_KEY },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, ms: performance.now() - began, output };
}

test("after close(), a client that watched and reported lets the process exit at once", async () => {
  const agent = await createAgent("ts-lifecycle");
  const { code, ms, output } = await run(
    `const client = new AgentVariants({ baseUrl: process.env.AV_BASE_URL, apiKey: process.env.AV_ADMIN_KEY, maxStaleness: 30 });
     const config = await client.resolve(${JSON.stringify(agent["slug"])}, { subject: "u1" });
     client.report(${JSON.stringify(agent["id"])}, { config, input_tokens: 5, output_tokens: 6, latency_ms: 7 });
     await client.close();
     console.log(JSON.stringify(client.reportStats()));`,
    10_000,
  );
  assert.equal(code, 0, output);
  assert.ok(ms < 5000, `the process ran ${ms} ms`);
  assert.deepEqual(JSON.parse(output.trim()), { sent: 1, pending: 0, dropped: 0, rejected: 0 });
});

test("a program that reported and never closed its client exits, its outcomes sent", async () => {
  const agent = await createAgent("ts-lifecycle");
  const { code, ms, output } = await run(
    `const client = new AgentVariants({ baseUrl: process.env.AV_BASE_URL, apiKey: process.env.AV_ADMIN_KEY });
     for (let n = 0; n < 3; n++) client.report(${JSON.stringify(agent["id"])}, { input_tokens: n, output_tokens: 1, latency_ms: 1 });`,
    10_000,
  );
  assert.equal(code, 0, output);
  assert.ok(ms < 5000, `the process ran ${ms} ms`);
  const usage = await api("GET", `/v1/agents/${agent["id"]}/usage`);
  assert.equal(usage["outcomes"], 3);
});
