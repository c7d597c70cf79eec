/**
 * agent-variants for agents written in TypeScript: resolve an agent's config locally (kept
 * current by a watch), render its prompts, hand them to the OpenAI and Anthropic clients,
 * report outcomes, and administer the service.
 */
export { VERSION } from "./version.js";
export * from "./errors.js";
export { ResolvedAgentConfig, CONFIG_FIELDS, KEYED_FIELDS } from "./config.js";
export type { ConfigValues, Served, Source, Tool, Variable, Scalar, ResolvedAgentConfigJSON } from "./config.js";
export { assign, bucket, rolloutArm } from "./assignment.js";
export { firstMatch, attributeErrors } from "./rules.js";
export type { Rule, Condition, Op, Attributes } from "./rules.js";
export type { RenderedPrompt } from "./prompts.js";
export type { OpenAIChatParams, AnthropicMessageParams, ClientOptions } from "./clients.js";
export { AgentVariants, CLOSE_TIMEOUT_MS } from "./client.js";
export type { AgentVariantsOptions, ResolveOptions } from "./client.js";
export type { Logger } from "./bundles.js";
export type { Outcome, ReportStats } from "./outcomes.js";
