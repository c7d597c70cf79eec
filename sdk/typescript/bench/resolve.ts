/**
 * `make bench` (bench/sdk_typescript.py): the TypeScript SDK's `resolve()` per call from
 * memory, and how fast an activation reaches it. Run by the Python driver with one JSON
 * argument (the servers, keys, agents and variant ids it set up); prints one JSON line.
 *
 * - Per call: every case makes one pass over the same list of distinct subjects, the cases
 *   taking turns within each repeat (so drift hits them alike), medians over the repeats:
 *   `resolve(agent)` on a plain agent, `resolve(agent, {subject, attributes})` on an agent with
 *   targeting rules (none of which holds for these contexts, so every rule is evaluated) and a
 *   running 3-arm experiment (SHA-256 of salt and subject per call); the harness (a Map lookup and
 *   a property read, and the `await` of an async function doing that: what the loop itself
 *   costs); and `fetch` of `GET .../resolved`, the request the SDK replaces.
 * - Propagation: a worker thread activates the plain agent's two variants in turn through
 *   server A; the main thread, whose client watches server B, polls `resolve()` on every turn
 *   of the event loop until it returns the new variant. Both read `process.hrtime`, one
 *   monotonic clock for the whole process.
 */

import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

import { AgentVariants } from "../src/index.js";

interface Setup {
  a: string;
  b: string;
  adminKey: string;
  resolveKey: string;
  plain: string;
  targeted: string;
  variants: string[];
  calls: number;
  httpCalls: number;
  repeats: number;
  rounds: number;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6; // ms, monotonic

async function writer(setup: Setup): Promise<void> {
  // The other thread: on each round number, activate that round's variant through A and
  // answer with when the request went out and when its response came back.
  parentPort!.on("message", async (n: number | null) => {
    if (n === null) {
      process.exit(0);
    }
    const sent = now();
    const response = await fetch(`${setup.a}/v1/agents/${setup.plain}/variants/${setup.variants[((n % 2) + 2) % 2]}/activate`, {
      method: "POST",
      headers: { Authorization: `Bearer ${setup.adminKey}`, "Idempotency-Key": `bench-${n}-${sent}` },
    });
    const answered = now();
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`activation answered ${response.status}`);
    parentPort!.postMessage({ sent, answered });
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function timed(loop: (subjects: string[]) => Promise<void> | void, subjects: string[]): Promise<number> {
  const start = process.hrtime.bigint();
  await loop(subjects);
  return Number(process.hrtime.bigint() - start) / 1e3 / subjects.length; // µs per call
}

async function perCall(client: AgentVariants, setup: Setup): Promise<Record<string, number[]>> {
  const subjects = Array.from({ length: setup.calls }, (_, n) => `user-${n}`);
  const httpSubjects = subjects.slice(0, setup.httpCalls);
  const plainConfig = await client.resolve(setup.plain);
  const table = new Map([[setup.plain, { plain: plainConfig }]]);
  const lookup = async (agent: string) => table.get(agent)!.plain;
  const attributes = { plan: "pro", seats: 12, beta: true };
  let sink = 0;
  const headers = { Authorization: `Bearer ${setup.resolveKey}` };
  const cases: Record<string, (subjects: string[]) => Promise<void> | void> = {
    harness_map_get: (list) => {
      for (let i = 0; i < list.length; i++) sink += table.get(setup.plain)!.plain.max_tokens;
    },
    harness_await_map_get: async (list) => {
      for (let i = 0; i < list.length; i++) sink += (await lookup(setup.plain)).max_tokens;
    },
    resolve_plain: async (list) => {
      for (let i = 0; i < list.length; i++) sink += (await client.resolve(setup.plain)).max_tokens;
    },
    resolve_subject_attributes: async (list) => {
      for (const subject of list) sink += (await client.resolve(setup.targeted, { subject, attributes })).max_tokens;
    },
    http_resolved: async (list) => {
      for (let i = 0; i < list.length; i++) {
        const response = await fetch(`${setup.b}/v1/agents/${setup.plain}/resolved`, { headers });
        if (response.status !== 200) throw new Error(`GET .../resolved answered ${response.status}`);
        sink += ((await response.json()) as { max_tokens: number }).max_tokens;
      }
    },
  };
  const lists: Record<string, string[]> = { http_resolved: httpSubjects };
  for (const [name, loop] of Object.entries(cases)) await timed(loop, (lists[name] ?? subjects).slice(0, 1000)); // warm up
  const runs: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
  for (let r = 0; r < setup.repeats; r++) {
    for (const [name, loop] of Object.entries(cases)) runs[name]!.push(await timed(loop, lists[name] ?? subjects));
  }
  // The subject case does pick arms (the experiment's three), not one config for everyone.
  const arms = new Set<string | null>();
  for (const subject of subjects.slice(0, 1000)) arms.add((await client.resolve(setup.targeted, { subject, attributes })).variant_id);
  if (arms.size !== 3) throw new Error(`expected 3 arms, saw ${arms.size}`);
  if (sink === 0) throw new Error("nothing resolved");
  return runs;
}

async function propagation(client: AgentVariants, setup: Setup): Promise<{ latencies: number[]; fromRequest: number[] }> {
  const worker = new Worker(new URL(import.meta.url), { workerData: setup });
  const latencies: number[] = [];
  const fromRequest: number[] = [];
  const answers: { sent: number; answered: number }[] = [];
  let waiting: (() => void) | null = null;
  worker.on("message", (times: { sent: number; answered: number }) => {
    answers.push(times);
    waiting?.();
  });
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  try {
    for (let n = -2; n < setup.rounds; n++) {
      const target = setup.variants[((n % 2) + 2) % 2]!;
      if ((await client.resolve(setup.plain)).variant_id === target) throw new Error(`round ${n}: already ${target}`);
      worker.postMessage(n);
      const deadline = now() + 10_000;
      while ((await client.resolve(setup.plain)).variant_id !== target) {
        if (now() > deadline) throw new Error(`round ${n}: the SDK did not get the change within 10 s`);
        await turn();
      }
      const seen = now();
      while (!answers.length) await new Promise<void>((resolve) => (waiting = resolve));
      const { sent, answered } = answers.shift()!;
      if (n >= 0) {
        latencies.push(seen - answered);
        fromRequest.push(seen - sent);
      }
    }
  } finally {
    worker.postMessage(null);
  }
  return { latencies, fromRequest };
}

async function main(): Promise<void> {
  const setup = JSON.parse(process.argv[2]!) as Setup;
  const client = new AgentVariants({ baseUrl: setup.b, apiKey: setup.resolveKey });
  try {
    await client.resolve(setup.plain);
    await client.resolve(setup.targeted);
    const runs = await perCall(client, setup);
    const { latencies, fromRequest } = await propagation(client, setup);
    const medians = Object.fromEntries(Object.entries(runs).map(([name, values]) => [name, median(values)]));
    process.stdout.write(JSON.stringify({ node: process.version, runs, medians, latencies, fromRequest }) + "\n");
  } finally {
    await client.close();
  }
}

if (isMainThread) {
  await main();
} else {
  await writer(workerData as Setup);
}
