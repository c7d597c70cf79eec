/**
 * `config.openaiChatParams(rendered)`, `config.anthropicMessageParams(rendered)` and
 * `config.clientOptions()` against the installed `openai` and `@anthropic-ai/sdk`: their request
 * types at compile time (tsc fails this file when a body is not assignable, and when a wrong
 * shape is not refused), and their real clients at run time, through a fetch that records the
 * request and answers it. No network; the SDK itself imports neither library.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import Anthropic from "@anthropic-ai/sdk";
import type { MessageCreateParamsNonStreaming } from "@anthropic-ai/sdk/resources/messages";
import OpenAI from "openai";
import type { ChatCompletionCreateParamsNonStreaming } from "openai/resources/chat/completions";

import { ResolvedAgentConfig } from "../../src/config.js";
import type { ConfigValues } from "../../src/config.js";
import { AgentVariantsError, IncompatibleConfig } from "../../src/errors.js";
import type { RenderedPrompt } from "../../src/prompts.js";

const SCHEMA = {
  type: "object",
  properties: { order_id: { type: "string", description: "e.g. A-1042" } },
  required: ["order_id"],
  additionalProperties: false,
};
const SUPPORT_VALUES: ConfigValues = {
  model_provider: "openai",
  model_name: "gpt-4o",
  system_prompt: 'You are {{tone}} support. Answer as JSON: {"answer": str}',
  user_prompt_template: "{{question}}",
  prompt_version: "",
  temperature: 0.3,
  max_tokens: 512,
  context_window: 0,
  input_token_limit: 0,
  token_budget: 0,
  timeout_seconds: 20,
  max_retries: 1,
  params: {},
  variables: { tone: { type: "string", default: "friendly" }, question: { type: "string" } },
  tools: {
    lookup_order: { description: "Find an order by its id.", parameters: SCHEMA, strict: true },
    escalate: { description: "", parameters: { type: "object", properties: {} } },
  },
};
const OPENAI_PARAMS = {
  top_p: 0.9,
  seed: 7,
  stop: ["\n\n"],
  reasoning_effort: "low",
  response_format: { type: "json_schema", json_schema: { name: "answer", schema: { type: "object" }, strict: true } },
};
// The Node client declares no `top_k` (nor `temperature`, `top_p`): a shared config sets it
// the Python clients' way, in `extra_body`, and this SDK puts it in the body.
const ANTHROPIC_PARAMS = { stop_sequences: ["END"], metadata: { user_id: "u42" }, extra_body: { top_k: 40 } };
const SYSTEM = 'You are friendly support. Answer as JSON: {"answer": str}';

function support(changes: Partial<ConfigValues> = {}): ResolvedAgentConfig {
  return new ResolvedAgentConfig({ agent_id: "agt_1", variant_id: null, ...SUPPORT_VALUES, ...changes });
}

const PROMPT: RenderedPrompt = support().render({ question: "Where is A-1042?" });

// Compile-time: the bodies are the libraries' own request types, as they are (no cast).
{
  const config = support();
  const openaiBody: ChatCompletionCreateParamsNonStreaming = config.openaiChatParams(PROMPT);
  const anthropicBody: MessageCreateParamsNonStreaming = config.anthropicMessageParams(PROMPT);
  // An agent adds its own turns of any kind the library takes.
  const withHistory: ChatCompletionCreateParamsNonStreaming = {
    ...openaiBody,
    messages: [...openaiBody.messages, { role: "assistant", content: "Earlier." }],
  };
  const anthropicHistory: MessageCreateParamsNonStreaming = {
    ...anthropicBody,
    messages: [...anthropicBody.messages, { role: "assistant", content: [{ type: "text", text: "Earlier." }] }],
  };
  // The check can fail: each of these is refused by tsc (an unused @ts-expect-error fails the build).
  // @ts-expect-error Anthropic's tools are not Chat Completions tools
  const crossed: ChatCompletionCreateParamsNonStreaming = config.anthropicMessageParams(PROMPT);
  // @ts-expect-error a string is no token count
  const wrongType: MessageCreateParamsNonStreaming = { ...anthropicBody, max_tokens: "512" };
  // @ts-expect-error Anthropic requires max_tokens
  const noMax: MessageCreateParamsNonStreaming = { model: anthropicBody.model, messages: anthropicBody.messages };
  void [withHistory, anthropicHistory, crossed, wrongType, noMax];
}

interface Seen {
  url: string;
  body: Record<string, unknown>;
}

/** A fetch that records each request and answers with `reply` (status 200) or `status`. */
function capturingFetch(seen: Seen[], reply: (body: Record<string, unknown>) => unknown, status = 200) {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = JSON.parse(String(init?.body)) as Record<string, unknown>;
    seen.push({ url: String(input instanceof Request ? input.url : input), body });
    const payload = status === 200 ? reply(body) : { error: { message: "down", type: "server_error" } };
    return new Response(JSON.stringify(payload), {
      status,
      headers: { "content-type": "application/json", "retry-after-ms": "1" },
    });
  };
}

function chatCompletion(text: string, model: unknown) {
  return {
    id: "chatcmpl-1",
    object: "chat.completion",
    created: 1_700_000_000,
    model,
    choices: [{ index: 0, message: { role: "assistant", content: text, refusal: null }, finish_reason: "stop", logprobs: null }],
    usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
  };
}

function message(text: string, model: unknown) {
  return {
    id: "msg_1",
    type: "message",
    role: "assistant",
    model,
    content: [{ type: "text", text }],
    stop_reason: "end_turn",
    stop_sequence: null,
    usage: { input_tokens: 10, output_tokens: 2 },
  };
}

test("the OpenAI body is a Chat Completions request: fields, shaped tools, then the params unchanged", () => {
  const config = support({ params: OPENAI_PARAMS });
  assert.deepEqual(config.openaiChatParams(PROMPT), {
    model: "gpt-4o",
    messages: [
      { role: "system", content: SYSTEM },
      { role: "user", content: "Where is A-1042?" },
    ],
    temperature: 0.3,
    max_completion_tokens: 512, // `max_tokens` is deprecated in Chat Completions
    tools: [
      {
        type: "function",
        function: { name: "lookup_order", description: "Find an order by its id.", parameters: SCHEMA, strict: true },
      },
      { type: "function", function: { name: "escalate", parameters: { type: "object", properties: {} } } },
    ],
    ...OPENAI_PARAMS,
  });
});

test("the Anthropic body: system apart, temperature when not 1.0, extra_body merged in", () => {
  const config = support({ model_name: "claude-sonnet-4-5", params: ANTHROPIC_PARAMS });
  assert.deepEqual(config.anthropicMessageParams(PROMPT), {
    model: "claude-sonnet-4-5",
    system: SYSTEM,
    messages: [{ role: "user", content: "Where is A-1042?" }],
    max_tokens: 512,
    tools: [
      { name: "lookup_order", description: "Find an order by its id.", input_schema: SCHEMA, strict: true },
      { name: "escalate", input_schema: { type: "object", properties: {} } },
    ],
    stop_sequences: ["END"],
    metadata: { user_id: "u42" },
    top_k: 40,
    temperature: 0.3,
  });
});

test("the OpenAI client sends the body as it is, with the config's retries", async () => {
  const config = support({ params: OPENAI_PARAMS });
  const body = config.openaiChatParams(PROMPT);
  const seen: Seen[] = [];
  const llm = new OpenAI({
    apiKey: "x",
    baseURL: "http://example.invalid/v1",
    fetch: capturingFetch(seen, (sent) => chatCompletion("Shipped.", sent["model"])),
  });
  const reply = await llm.chat.completions.create(body, config.clientOptions());
  assert.equal(reply.choices[0]?.message.content, "Shipped.");
  assert.deepEqual(seen.map((s) => new URL(s.url).pathname), ["/v1/chat/completions"]);
  assert.deepEqual(seen[0]!.body, JSON.parse(JSON.stringify(body)));

  const failing: Seen[] = [];
  const broken = new OpenAI({ apiKey: "x", baseURL: "http://example.invalid/v1", fetch: capturingFetch(failing, () => null, 500) });
  await assert.rejects(broken.chat.completions.create(body, config.clientOptions()), OpenAI.InternalServerError);
  assert.equal(failing.length, 1 + config.max_retries);
});

test("the Anthropic client sends the body as it is: temperature and extra_body's keys reach the wire", async () => {
  const config = support({ model_name: "claude-sonnet-4-5", params: ANTHROPIC_PARAMS });
  const body = config.anthropicMessageParams(PROMPT);
  const seen: Seen[] = [];
  const llm = new Anthropic({
    apiKey: "x",
    baseURL: "http://example.invalid",
    fetch: capturingFetch(seen, (sent) => message("Shipped.", sent["model"])),
  });
  const reply = await llm.messages.create(body, config.clientOptions());
  const first = reply.content[0];
  assert.ok(first !== undefined && first.type === "text" && first.text === "Shipped.");
  assert.deepEqual(seen.map((s) => new URL(s.url).pathname), ["/v1/messages"]);
  assert.deepEqual(seen[0]!.body, JSON.parse(JSON.stringify(body)));
  assert.equal(seen[0]!.body["temperature"], 0.3);
  assert.equal(seen[0]!.body["top_k"], 40);
  assert.ok(!("extra_body" in seen[0]!.body));
});

test("empty prompts are left out: no empty message, no system", async () => {
  const bare = support({ system_prompt: "", user_prompt_template: "{{q}}", variables: { q: { type: "string" } }, tools: {} });
  for (const build of [(p: RenderedPrompt) => bare.openaiChatParams(p), (p: RenderedPrompt) => bare.anthropicMessageParams(p)]) {
    const body = build(bare.render({ q: "hi" }));
    assert.deepEqual(body.messages, [{ role: "user", content: "hi" }]);
    assert.ok(!("system" in body) && !("tools" in body));
    assert.deepEqual(build({ system: "", user: "" }).messages, []);
  }
  // What reaches the wire has no empty message either.
  const seen: Seen[] = [];
  const llm = new OpenAI({ apiKey: "x", baseURL: "http://example.invalid/v1", fetch: capturingFetch(seen, (s) => chatCompletion("ok", s["model"])) });
  await llm.chat.completions.create(bare.openaiChatParams(bare.render({ q: "hi" })));
  assert.deepEqual(seen[0]!.body["messages"], [{ role: "user", content: "hi" }]);
});

test("Anthropic refuses a temperature above 1 rather than changing it, naming every problem", () => {
  const hot = support({ temperature: 1.5, params: { temperature: 0.1, extra_body: { temperature: 1 } } });
  assert.throws(
    () => hot.anthropicMessageParams(PROMPT),
    (error: unknown) => {
      assert.ok(error instanceof IncompatibleConfig && error instanceof AgentVariantsError);
      assert.deepEqual(error.errors.map((e) => e.param), ["temperature", "params.extra_body.temperature", "params.temperature"]);
      assert.equal(error.code, "incompatible_config");
      assert.equal(error.provider, "Anthropic");
      return true;
    },
  );
  assert.equal(support({ temperature: 2.0 }).openaiChatParams(PROMPT).temperature, 2.0);
});

test("Anthropic gets no temperature at its default; 0 and 1 are in range", () => {
  const atDefault = support({ temperature: 1.0 }).anthropicMessageParams(PROMPT);
  assert.ok(!("temperature" in atDefault) && !("extra_body" in atDefault));
  assert.equal(support({ temperature: 0.0 }).anthropicMessageParams(PROMPT).temperature, 0);
  for (const build of ["openaiChatParams", "anthropicMessageParams"] as const) {
    assert.throws(() => support({ params: { extra_body: "top_k=1" } })[build](PROMPT), (error: unknown) => {
      assert.ok(error instanceof IncompatibleConfig);
      assert.deepEqual(error.errors, [{ param: "params.extra_body", message: "must be an object (what the request body gains)" }]);
      return true;
    });
  }
});

test("a param may not replace what a field sets", () => {
  const cases: ["openaiChatParams" | "anthropicMessageParams", string][] = [];
  for (const build of ["openaiChatParams", "anthropicMessageParams"] as const) {
    for (const key of ["model", "messages", "max_tokens", "tools"]) cases.push([build, key]);
  }
  cases.push(["openaiChatParams", "max_completion_tokens"], ["openaiChatParams", "temperature"]);
  cases.push(["anthropicMessageParams", "system"]);
  for (const [build, key] of cases) {
    const config = support({ params: { [key]: 1, top_p: 0.5 } });
    assert.throws(() => config[build](PROMPT), (error: unknown) => {
      assert.ok(error instanceof IncompatibleConfig, `${build} ${key}`);
      assert.deepEqual(error.errors, [{ param: `params.${key}`, message: `'${key}' comes from the config's own fields` }]);
      return true;
    });
  }
});

test("the bodies are the caller's to change: the config stays as it was", () => {
  const config = support({ params: { response_format: { type: "json_object" } } });
  const body = config.openaiChatParams(PROMPT);
  body.tools![0]!.function.parameters["properties"] = {};
  (body["response_format"] as { type: string }).type = "text";
  body.messages.push({ role: "user", content: "more" });
  assert.deepEqual(config.tools["lookup_order"]!.parameters, SCHEMA);
  assert.deepEqual(config.params, { response_format: { type: "json_object" } });
  const anthropic = config.anthropicMessageParams(PROMPT);
  anthropic.tools![1]!.input_schema["properties"] = { x: {} };
  assert.deepEqual(config.tools["escalate"]!.parameters, { type: "object", properties: {} });
});

test("client options belong to the client: the timeout in milliseconds", () => {
  assert.deepEqual(support().clientOptions(), { timeout: 20_000, maxRetries: 1 });
});

test("a config without keyed fields still makes requests", () => {
  const old = support({ system_prompt: "Be brief.", user_prompt_template: "Hello", params: {}, tools: {}, variables: {} });
  const prompt = old.render();
  assert.deepEqual(old.openaiChatParams(prompt), {
    model: "gpt-4o",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hello" },
    ],
    temperature: 0.3,
    max_completion_tokens: 512,
  });
  assert.deepEqual(old.anthropicMessageParams(prompt), {
    model: "gpt-4o",
    system: "Be brief.",
    messages: [{ role: "user", content: "Hello" }],
    max_tokens: 512,
    temperature: 0.3,
  });
});
