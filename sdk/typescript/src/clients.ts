// STUB (scaffold): the semantics helper replaces this file (agent_variants/clients.py for the Node clients).
import type { RequestFields } from "./config.js";
import type { RenderedPrompt } from "./prompts.js";

export type OpenAIChatParams = Record<string, unknown>;
export type AnthropicMessageParams = Record<string, unknown>;
export interface ClientOptions {
  timeout: number;
  maxRetries: number;
}

export function openaiChatParams(_rendered: RenderedPrompt, _fields: RequestFields): OpenAIChatParams {
  throw new Error("not yet ported");
}

export function anthropicMessageParams(_rendered: RenderedPrompt, _fields: RequestFields): AnthropicMessageParams {
  throw new Error("not yet ported");
}

export function clientOptions(options: { timeoutSeconds: number; maxRetries: number }): ClientOptions {
  return { timeout: options.timeoutSeconds * 1000, maxRetries: options.maxRetries };
}
