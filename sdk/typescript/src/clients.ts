/**
 * A resolved config as a model client's request: the body of OpenAI's
 * `client.chat.completions.create(body)` and Anthropic's `client.messages.create(body)`, and
 * the client options (`timeout` in milliseconds, `maxRetries`) that belong to the client, not
 * the request (the Python SDK's `agent_variants.clients`, for the Node clients).
 *
 * Our own structural types: the SDK never imports `openai` or `@anthropic-ai/sdk` (its tests
 * check that these bodies are assignable to both libraries' request types, and send them
 * through the real clients).
 *
 * - `messages`: the system prompt, then the user prompt, each left out when it renders empty
 *   (an empty message is refused, or means nothing). An agent whose user prompt is empty
 *   brings its own turns: `{...body, messages: [...body.messages, ...history]}`.
 * - `params` go into the body unchanged, after the fields: they are provider-specific by
 *   design. A param naming a key the config's own fields set (`model`, `messages`,
 *   `temperature`, `max_tokens`, ...) throws `IncompatibleConfig`: the field is the one place.
 * - `params.extra_body` is the Python clients' way to add keys to the body (a config is shared
 *   by every SDK); the Node clients have no such option and send the body as they are given
 *   it, so its entries are merged into the body here: the same config puts the same JSON on
 *   the wire from either SDK.
 * - Anthropic takes a temperature from 0 to 1, ours goes to 2: above 1 throws
 *   `IncompatibleConfig` rather than sending a different temperature than the config says.
 *   `@anthropic-ai/sdk` 1.17's `MessageCreateParams` has no `temperature` (nor `top_p`, `top_k`),
 *   so we do what the Python SDK does: 1.0, the API's default, is left out, and any other goes
 *   in the body anyway. Python needs `extra_body` for that; the Node client sends the body as it
 *   is given, so here it is the body's own `temperature` key: the same JSON on the wire, and the
 *   models that refuse a temperature say so rather than the SDK dropping it.
 */
import type { RequestFields, Tool } from "./config.js";
import { IncompatibleConfig } from "./errors.js";
import type { ProblemError } from "./errors.js";
import type { RenderedPrompt } from "./prompts.js";

// The body keys each builder derives from the config's fields (params may not set them).
// OpenAI's `max_tokens` is deprecated for `max_completion_tokens`; both stand for the field.
export const OPENAI_DERIVED = ["model", "messages", "temperature", "max_completion_tokens", "max_tokens", "tools"] as const;
export const ANTHROPIC_DERIVED = ["model", "messages", "system", "temperature", "max_tokens", "tools"] as const;
export const ANTHROPIC_MAX_TEMPERATURE = 1.0;
export const ANTHROPIC_DEFAULT_TEMPERATURE = 1.0; // the API's, so leaving it out changes nothing

/** A JSON Schema of a tool's arguments. Both APIs take only object schemas (arguments are an object). */
export interface ToolSchema {
  type: "object";
  [keyword: string]: unknown;
}

/** A turn of Chat Completions as the config writes it; the agent may add others of its own. */
export interface OpenAIChatMessage {
  role: "system" | "user";
  content: string;
}

export interface OpenAIFunctionTool {
  type: "function";
  function: { name: string; description?: string; parameters: ToolSchema; strict?: boolean };
}

/** The body of `client.chat.completions.create(body)`; the config's params follow these keys. */
export interface OpenAIChatParams {
  model: string;
  messages: OpenAIChatMessage[];
  temperature: number;
  max_completion_tokens: number;
  tools?: OpenAIFunctionTool[];
  [param: string]: unknown;
}

export interface AnthropicMessage {
  role: "user";
  content: string;
}

export interface AnthropicTool {
  name: string;
  description?: string;
  input_schema: ToolSchema;
  strict?: boolean;
}

/** The body of `client.messages.create(body)`; the config's params follow these keys. */
export interface AnthropicMessageParams {
  model: string;
  system?: string;
  messages: AnthropicMessage[];
  max_tokens: number;
  tools?: AnthropicTool[];
  /**
   * Only when not 1.0, the API's default. `@anthropic-ai/sdk` 1.17 declares no `temperature` in
   * `MessageCreateParams` (nor `top_p`, `top_k`); it sends the body as given, so the key still
   * reaches the API, as the Python SDK's `extra_body` makes it: the models that take it get
   * it, the others say so, rather than the SDK sending something other than the config says.
   */
  temperature?: number;
  [param: string]: unknown;
}

/** What both Node clients take when built (`new OpenAI({...options})`) or per request (`create(body, options)`). */
export interface ClientOptions {
  /** Milliseconds. */
  timeout: number;
  maxRetries: number;
}

/** OpenAI Chat Completions: `{model, messages, temperature, max_completion_tokens, tools?, ...params}`. */
export function openaiChatParams(rendered: RenderedPrompt, fields: RequestFields): OpenAIChatParams {
  const problems: ProblemError[] = [];
  const extraBody = checkExtraBody(fields.params, problems);
  checkParams("OpenAI", fields.params, OPENAI_DERIVED, problems);
  const messages: OpenAIChatMessage[] = [];
  if (rendered.system) messages.push({ role: "system", content: rendered.system });
  if (rendered.user) messages.push({ role: "user", content: rendered.user });
  const body: OpenAIChatParams = {
    model: fields.model,
    messages,
    temperature: fields.temperature,
    max_completion_tokens: fields.maxTokens,
  };
  const tools = Object.entries(fields.tools);
  if (tools.length) {
    body.tools = tools.map(([name, tool]) => {
      const { input_schema, ...shaped } = shapeTool(name, tool);
      return { type: "function", function: { ...shaped, parameters: input_schema } };
    });
  }
  return withParams(body, fields.params, extraBody);
}

/**
 * Anthropic Messages: `{model, system?, messages, max_tokens, tools?, ...params}`, and
 * `temperature` when it is not 1.0 (the API's default, left out so the models that refuse a
 * temperature take a config that never set one).
 */
export function anthropicMessageParams(rendered: RenderedPrompt, fields: RequestFields): AnthropicMessageParams {
  const problems: ProblemError[] = [];
  if (fields.temperature > ANTHROPIC_MAX_TEMPERATURE) {
    problems.push({ param: "temperature", message: `${fields.temperature} is above 1, the highest Anthropic's API takes` });
  }
  const extraBody = checkExtraBody(fields.params, problems);
  if (extraBody !== null && Object.prototype.hasOwnProperty.call(extraBody, "temperature")) {
    problems.push({ param: "params.extra_body.temperature", message: "comes from the config's temperature" });
  }
  checkParams("Anthropic", fields.params, ANTHROPIC_DERIVED, problems);
  // Built in the order the Python SDK writes it: model, system?, messages, max_tokens.
  const body: AnthropicMessageParams = {
    model: fields.model,
    ...(rendered.system ? { system: rendered.system } : {}),
    messages: rendered.user ? [{ role: "user", content: rendered.user }] : [],
    max_tokens: fields.maxTokens,
  };
  const tools = Object.entries(fields.tools);
  if (tools.length) body.tools = tools.map(([name, tool]) => shapeTool(name, tool));
  const built = withParams(body, fields.params, extraBody);
  if (fields.temperature !== ANTHROPIC_DEFAULT_TEMPERATURE) built.temperature = fields.temperature;
  return built;
}

/** `{timeout (ms), maxRetries}`: the config's `timeout_seconds` and `max_retries`. */
export function clientOptions(options: { timeoutSeconds: number; maxRetries: number }): ClientOptions {
  return { timeout: options.timeoutSeconds * 1000, maxRetries: options.maxRetries };
}

/** One tool of the config (`{description, parameters, strict?}`) as Anthropic has it (OpenAI's `function` renames the schema). */
function shapeTool(name: string, tool: Tool): AnthropicTool {
  const shaped: AnthropicTool = {
    name,
    ...(tool.description ? { description: tool.description } : {}),
    // The service stores only JSON Schema objects; both APIs take object schemas.
    input_schema: (tool.parameters ?? EMPTY_SCHEMA) as ToolSchema,
  };
  if (tool.strict !== undefined) shaped.strict = tool.strict;
  return shaped;
}

const EMPTY_SCHEMA: ToolSchema = { type: "object", properties: {} };

/** `params.extra_body` when it is an object (null when absent); a problem when it is not. */
function checkExtraBody(params: Readonly<Record<string, unknown>>, problems: ProblemError[]): Record<string, unknown> | null {
  const extraBody = params["extra_body"];
  if (extraBody === undefined) return null;
  if (typeof extraBody !== "object" || extraBody === null || Array.isArray(extraBody)) {
    problems.push({ param: "params.extra_body", message: "must be an object (what the request body gains)" });
    return null;
  }
  return extraBody as Record<string, unknown>;
}

/** Throw `IncompatibleConfig` naming `problems` and every param that would replace a key the config's fields set. */
function checkParams(
  provider: string,
  params: Readonly<Record<string, unknown>>,
  derived: readonly string[],
  problems: ProblemError[],
): void {
  for (const key of Object.keys(params)) {
    if (derived.includes(key)) problems.push({ param: `params.${key}`, message: `'${key}' comes from the config's own fields` });
  }
  if (problems.length) throw new IncompatibleConfig(provider, problems);
}

/**
 * The body with the params after the fields and `extra_body`'s entries merged in (as the
 * Python clients send them), all copied: changing the body never changes the config.
 */
function withParams<B extends Record<string, unknown>>(
  body: B,
  params: Readonly<Record<string, unknown>>,
  extraBody: Record<string, unknown> | null,
): B {
  const merged: Record<string, unknown> = { ...body };
  for (const [key, value] of Object.entries(params)) if (key !== "extra_body") merged[key] = value;
  if (extraBody !== null) Object.assign(merged, extraBody);
  return structuredClone(merged) as B;
}
