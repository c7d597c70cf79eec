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
export { firstMatch, attributeErrors, contextAttributes, isNumericString, OPS } from "./rules.js";
export type { Rule, Condition, Op, Attributes } from "./rules.js";
export { TemplateError, RenderError, placeholders, variableNames, numberText, valueText, renderPrompt } from "./templates.js";
export type { Placeholder, VariableSpec } from "./templates.js";
export { renderTemplates } from "./prompts.js";
export type { RenderedPrompt } from "./prompts.js";
export { choose, coalesce, coalesceKeyed, consistencyViolation } from "./coalesce.js";
export type { Choice, SplitSpec } from "./coalesce.js";
export type {
  OpenAIChatParams,
  OpenAIChatMessage,
  OpenAIFunctionTool,
  AnthropicMessageParams,
  AnthropicMessage,
  AnthropicTool,
  ToolSchema,
  ClientOptions,
} from "./clients.js";
export { Admin, Agents, Variants, Experiments, Keys, Environments, Rules, pages } from "./admin.js";
export type {
  Agent,
  AgentCreate,
  AgentUpdate,
  AgentConfig,
  Variant,
  VariantCreate,
  VariantUpdate,
  ConfigOverrides,
  Experiment,
  ExperimentCreate,
  ExperimentUpdate,
  ExperimentResults,
  GuardrailFigures,
  ApiKey,
  ApiKeyCreate,
  Environment,
  EnvironmentCreate,
  EnvironmentUpdate,
  RuleSet,
  RuleInput,
  Revision,
  Undo,
  Diff,
  Usage,
  Bundle,
  Resolved,
  Page,
  PageOptions,
  InEnvironment,
  ChangeOptions,
  IfMatchOptions,
  PostOptions,
  ActionOptions,
  RequestBody,
  ResponseBody,
  QueryParams,
} from "./admin.js";
export { connection } from "./http.js";
export type { Connection, ETag } from "./http.js";
// The whole API, as openapi-typescript wrote it from the service's OpenAPI document.
export type { paths, components, operations } from "./generated/openapi.js";
export { AgentVariants, CLOSE_TIMEOUT_MS } from "./client.js";
export type { AgentVariantsOptions, ResolveOptions } from "./client.js";
export type { Logger } from "./bundles.js";
export type { Outcome, ReportStats } from "./outcomes.js";
