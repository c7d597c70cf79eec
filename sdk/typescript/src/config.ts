/**
 * The agent config: its twelve fields, the three keyed ones (`params`, `tools`, `variables`,
 * contract 1.1), and `ResolvedAgentConfig`, what an agent runs with (the Python SDK's
 * `agent_variants.config`, the same names on the wire).
 */

import { anthropicMessageParams, clientOptions, openaiChatParams } from "./clients.js";
import type { AnthropicMessageParams, ClientOptions, OpenAIChatParams } from "./clients.js";
import { renderTemplates } from "./prompts.js";
import type { RenderedPrompt } from "./prompts.js";

/** The twelve fields, in the contract's order. */
export const CONFIG_FIELDS = [
  "model_provider",
  "model_name",
  "system_prompt",
  "user_prompt_template",
  "prompt_version",
  "temperature",
  "max_tokens",
  "context_window",
  "input_token_limit",
  "token_budget",
  "timeout_seconds",
  "max_retries",
] as const;
export type ConfigField = (typeof CONFIG_FIELDS)[number];

/** Contract 1.1's keyed fields, resolved by top-level key. */
export const KEYED_FIELDS = ["params", "tools", "variables"] as const;
export type KeyedField = (typeof KEYED_FIELDS)[number];

/** What served a config. Contract 1.1 adds "rule" and "rollout". */
export type Source = "agent" | "variant" | "preview" | "experiment" | "rule" | "rollout";

/** One tool of a config: a JSON Schema for its arguments (OpenAI's `parameters`, Anthropic's `input_schema`). */
export interface Tool {
  description?: string;
  parameters?: Record<string, unknown>;
  strict?: boolean;
  [extra: string]: unknown;
}

/** A declared template variable. */
export interface Variable {
  type: "string" | "number" | "integer" | "boolean";
  required?: boolean;
  default?: string | number | boolean;
  description?: string;
  [extra: string]: unknown;
}

/** A value a template variable (or a context attribute) may take. */
export type Scalar = string | number | boolean;

/** The values of a resolved config: the twelve, then the keyed fields. */
export interface ConfigValues {
  model_provider: string;
  model_name: string;
  system_prompt: string;
  user_prompt_template: string;
  prompt_version: string;
  temperature: number;
  max_tokens: number;
  context_window: number;
  input_token_limit: number;
  token_budget: number;
  timeout_seconds: number;
  max_retries: number;
  params: Record<string, unknown>;
  tools: Record<string, Tool>;
  variables: Record<string, Variable>;
}

/** What served a config, besides its values. */
export interface Served {
  agent_id: string;
  variant_id: string | null;
  agent_slug: string | null;
  variant_slug: string | null;
  source: Source;
  experiment_id: string | null;
  arm: number | null;
  environment: string | null;
  rule_id: string | null;
}

/** A `resolved_agent_config` object as the service sends it. */
export type ResolvedAgentConfigJSON = ConfigValues &
  Partial<Served> & { agent_id: string; variant_id: string | null; provenance?: Record<string, string> };

const SERVED_EXTRAS = ["agent_slug", "variant_slug", "source", "experiment_id", "arm", "environment", "rule_id"] as const;

/** What an agent runs with: the active variant's overrides coalesced over the base config. Immutable. */
export class ResolvedAgentConfig implements ConfigValues, Served {
  readonly agent_id!: string;
  readonly variant_id!: string | null;
  readonly model_provider!: string;
  readonly model_name!: string;
  readonly system_prompt!: string;
  readonly user_prompt_template!: string;
  readonly prompt_version!: string;
  readonly temperature!: number;
  readonly max_tokens!: number;
  readonly context_window!: number;
  readonly input_token_limit!: number;
  readonly token_budget!: number;
  readonly timeout_seconds!: number;
  readonly max_retries!: number;
  readonly params!: Readonly<Record<string, unknown>>;
  readonly tools!: Readonly<Record<string, Tool>>;
  readonly variables!: Readonly<Record<string, Variable>>;
  readonly agent_slug!: string | null;
  readonly variant_slug!: string | null;
  readonly source!: Source;
  readonly experiment_id!: string | null;
  readonly arm!: number | null;
  readonly environment!: string | null;
  readonly rule_id!: string | null;
  /** The values that came from the variant: field names, and `params.<key>`, `tools.<name>`, `variables.<name>`. */
  readonly overridden!: ReadonlySet<string>;

  constructor(fields: ConfigValues & Partial<Served> & { agent_id: string; variant_id: string | null; overridden?: Iterable<string> }) {
    const self = this as Record<string, unknown>;
    for (const name of CONFIG_FIELDS) self[name] = fields[name];
    for (const name of KEYED_FIELDS) self[name] = fields[name] ?? {};
    self["agent_id"] = fields.agent_id;
    self["variant_id"] = fields.variant_id;
    self["agent_slug"] = fields.agent_slug ?? null;
    self["variant_slug"] = fields.variant_slug ?? null;
    self["source"] = fields.source ?? "agent";
    self["experiment_id"] = fields.experiment_id ?? null;
    self["arm"] = fields.arm ?? null;
    self["environment"] = fields.environment ?? null;
    self["rule_id"] = fields.rule_id ?? null;
    self["overridden"] = new Set(fields.overridden ?? []);
    Object.freeze(this);
  }

  /** A `resolved_agent_config` object (with `provenance`) as a config. A service before contract 1.1 sends no keyed fields: they are empty. */
  static fromJSON(body: ResolvedAgentConfigJSON): ResolvedAgentConfig {
    const provenance = body.provenance ?? {};
    const overridden = Object.keys(provenance).filter((name) => provenance[name] !== "agent");
    const fields: Record<string, unknown> = { agent_id: body.agent_id, variant_id: body.variant_id, overridden };
    for (const name of CONFIG_FIELDS) fields[name] = body[name];
    for (const name of KEYED_FIELDS) fields[name] = body[name] ?? {};
    for (const name of SERVED_EXTRAS) if (body[name] !== undefined && body[name] !== null) fields[name] = body[name];
    return new ResolvedAgentConfig(fields as unknown as ConfigValues & Served);
  }

  /** This config with some of what served it changed (`{source: "rule", rule_id}`); itself when nothing changes. */
  with(changes: Partial<Served>): ResolvedAgentConfig {
    const entries = Object.entries(changes) as [keyof Served, unknown][];
    if (entries.every(([name, value]) => this[name] === value)) return this;
    return new ResolvedAgentConfig({ ...this.values(), ...this.served(), ...changes, overridden: this.overridden });
  }

  /** Where each value came from: "agent", or "variant" ("experiment" when an experiment's arm chose the variant). */
  get provenance(): Record<string, "agent" | "variant" | "experiment"> {
    const other = this.source === "experiment" ? "experiment" : "variant";
    const out: Record<string, "agent" | "variant" | "experiment"> = {};
    const names: string[] = [...CONFIG_FIELDS];
    for (const kind of KEYED_FIELDS) for (const key of Object.keys(this[kind])) names.push(`${kind}.${key}`);
    for (const name of names) out[name] = this.overridden.has(name) ? other : "agent";
    return out;
  }

  /** The resolved values as a plain object: the twelve, then `params`, `tools`, `variables`. */
  values(): ConfigValues {
    const out: Record<string, unknown> = {};
    for (const name of CONFIG_FIELDS) out[name] = this[name];
    for (const name of KEYED_FIELDS) out[name] = this[name];
    return out as unknown as ConfigValues;
  }

  private served(): Served {
    return {
      agent_id: this.agent_id,
      variant_id: this.variant_id,
      agent_slug: this.agent_slug,
      variant_slug: this.variant_slug,
      source: this.source,
      experiment_id: this.experiment_id,
      arm: this.arm,
      environment: this.environment,
      rule_id: this.rule_id,
    };
  }

  /** The config as the service writes it (`provenance` included). */
  toJSON(): ResolvedAgentConfigJSON {
    return { ...this.served(), ...this.values(), provenance: this.provenance };
  }

  /**
   * Both templates rendered with these variables, checked against `this.variables` (contract
   * 1.1, **Render**: the rules of the service's `POST .../render`). Throws `RenderFailed`
   * naming each bad variable (`variables.<name>`).
   */
  render(variables: Record<string, Scalar> = {}): RenderedPrompt {
    return renderTemplates(this.system_prompt, this.user_prompt_template, this.variables, variables);
  }

  /** The body of OpenAI's `client.chat.completions.create(body)`. */
  openaiChatParams(rendered: RenderedPrompt): OpenAIChatParams {
    return openaiChatParams(rendered, this.requestFields());
  }

  /** The body of Anthropic's `client.messages.create(body)`; throws `IncompatibleConfig` for a temperature above 1. */
  anthropicMessageParams(rendered: RenderedPrompt): AnthropicMessageParams {
    return anthropicMessageParams(rendered, this.requestFields());
  }

  /** `{timeout (ms), maxRetries}`: what both Node clients take when built or per request. */
  clientOptions(): ClientOptions {
    return clientOptions({ timeoutSeconds: this.timeout_seconds, maxRetries: this.max_retries });
  }

  private requestFields(): RequestFields {
    return {
      model: this.model_name,
      temperature: this.temperature,
      maxTokens: this.max_tokens,
      tools: this.tools,
      params: this.params,
    };
  }
}

/** What the request builders take from a config. */
export interface RequestFields {
  model: string;
  temperature: number;
  maxTokens: number;
  tools: Readonly<Record<string, Tool>>;
  params: Readonly<Record<string, unknown>>;
}
