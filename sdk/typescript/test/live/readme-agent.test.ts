/**
 * The README's TypeScript agent (examples/agent.ts, shown in the README as it is) runs as
 * written: against the real server, with the real `openai` client talking to a stand-in for
 * OpenAI's API on loopback that checks every request body and answers like the API does.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";

const BASE = process.env.AV_BASE_URL!;
const KEY = process.env.AV_ADMIN_KEY!;
const seen: Record<string, unknown>[] = [];

const openai = createServer((request, response) => {
  let text = "";
  request.on("data", (chunk: Buffer) => (text += chunk.toString()));
  request.on("end", () => {
    if (request.method !== "POST" || request.url !== "/v1/chat/completions") {
      response.writeHead(404).end();
      return;
    }
    seen.push(JSON.parse(text) as Record<string, unknown>);
    const body = {
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1_700_000_000,
      model: "gpt-4o",
      choices: [
        { index: 0, message: { role: "assistant", content: "It is in Billing.", refusal: null }, finish_reason: "stop", logprobs: null },
      ],
      usage: { prompt_tokens: 31, completion_tokens: 6, total_tokens: 37 },
    };
    response.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(body));
  });
});

async function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const init: RequestInit = { method, headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" } };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(BASE + path, init);
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path} answered ${response.status}: ${text}`);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

// The setup runs once, and every test awaits it first: a root-level before() is not awaited
// before the first test on every Node this package supports (20.13's runner starts it late).
const ready = (async () => {
  await new Promise<void>((resolve) => openai.listen(0, "127.0.0.1", resolve));
  const port = (openai.address() as AddressInfo).port;
  process.env.OPENAI_API_KEY = "sk-test";
  process.env.OPENAI_BASE_URL = `http://127.0.0.1:${port}/v1`;
  process.env.AGENT_VARIANTS_URL = BASE;
  process.env.AGENT_VARIANTS_KEY = KEY;
  await api("POST", "/v1/agents", {
    name: "Support Bot",
    slug: "support-bot",
    config: {
      model_provider: "openai",
      model_name: "gpt-4o",
      system_prompt: "You answer billing questions.",
      user_prompt_template: "Customer question: {{question}}",
      temperature: 0.3,
      max_tokens: 400,
      timeout_seconds: 20,
      max_retries: 1,
    },
  });
})();
ready.catch(() => undefined); // its failure is reported by each test that awaits it

after(() => openai.close());

test("the README's agent resolves, renders, calls the model as the config says, and reports", async () => {
  await ready;
  const { answer, client } = (await import("../../examples/agent.js")) as typeof import("../../examples/agent.js");
  try {
    assert.equal(await answer("user-42", "Where is my invoice?"), "It is in Billing.");
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0], {
      model: "gpt-4o",
      messages: [
        { role: "system", content: "You answer billing questions." },
        { role: "user", content: "Customer question: Where is my invoice?" },
      ],
      temperature: 0.3,
      max_completion_tokens: 400,
    });
    const stats = await client.flush();
    assert.equal(stats.sent, 1);
    const usage = await api("GET", "/v1/agents/support-bot/usage");
    assert.equal(usage.outcomes, 1);
    assert.equal(usage.input_tokens, 31);
    assert.equal(usage.output_tokens, 6);
  } finally {
    await client.close();
  }
});
