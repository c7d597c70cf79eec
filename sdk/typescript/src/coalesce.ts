/**
 * How a config is resolved, as pure functions (the Python SDK's `agent_variants.config` and the
 * service's `choose`, pinned by the conformance cases): which of an environment's paths serves
 * a request (`choose`), how a variant's overrides coalesce over the base config (`coalesce`,
 * `coalesceKeyed`), and the cross-field token rule (`consistencyViolation`).
 */
import { assign, rolloutArm } from "./assignment.js";
import { CONFIG_FIELDS, KEYED_FIELDS } from "./config.js";
import type { KeyedField } from "./config.js";
import { firstMatch } from "./rules.js";
import type { Attributes } from "./rules.js";

/** An environment's split: a running experiment's (`percent` null) or a rollout's (`weights` unused). */
export interface SplitSpec {
  salt: string;
  weights: readonly number[];
  percent: number | null;
}

export type Choice<R> = { kind: "rule"; rule: R } | { kind: "split"; arm: number } | { kind: "plain" };

const PLAIN: Choice<never> = Object.freeze({ kind: "plain" });

/**
 * Contract 1.1's resolution order in an environment: (1) the first rule whose conditions all
 * hold for the context (the very rule object), (2) with a subject and a split, the subject's
 * arm (a rollout's at its percent, else the experiment's by weight), (3) the plain resolution
 * (the active variant, else the base config). With rules, throws for a context the API would refuse.
 */
export function choose<R extends { when?: unknown }>(
  rules: readonly R[],
  split: SplitSpec | null,
  subject: string | null | undefined,
  attributes: Attributes | null | undefined,
): Choice<R> {
  // As the service's `choose`: no rules, nothing to match (checking the context is the caller's, `attributeErrors`).
  const rule = rules.length ? firstMatch(rules, subject, attributes) : null;
  if (rule !== null) return { kind: "rule", rule };
  if (subject !== null && subject !== undefined && split !== null) {
    const arm = split.percent !== null ? rolloutArm(split.salt, subject, split.percent) : assign(split.salt, subject, split.weights);
    return { kind: "split", arm };
  }
  return PLAIN;
}

const DISABLED = "disabled";

/** Exactly `{"disabled": true}`: a variant's tool that drops the base's tool of that name. */
function isDisabledTool(value: unknown): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] === DISABLED && (value as Record<string, unknown>)[DISABLED] === true;
}

/** The twelve values: each override that is set (not null or undefined), else the base's. */
export function coalesce(
  overrides: Readonly<Record<string, unknown>>,
  base: Readonly<Record<string, unknown>>,
): Record<(typeof CONFIG_FIELDS)[number], unknown> {
  const resolved = {} as Record<(typeof CONFIG_FIELDS)[number], unknown>;
  for (const name of CONFIG_FIELDS) resolved[name] = overrides[name] ?? base[name];
  return resolved;
}

/**
 * The keyed fields resolved, and which entries the variant gave (`params.top_p`, ...).
 *
 * `base` holds the agent's `params`, `tools`, `variables`; `overrides` a variant's, plus
 * `params_unset`. A variant's entry replaces the base's whole; `params_unset` drops base params
 * (a param the variant sets itself stays); a `{"disabled": true}` tool drops the base's tool of
 * that name. Missing fields count as empty.
 */
export function coalesceKeyed(
  overrides: Readonly<Record<string, unknown>>,
  base: Readonly<Record<string, unknown>>,
): { resolved: Record<KeyedField, Record<string, unknown>>; given: Set<string> } {
  const resolved = {} as Record<KeyedField, Record<string, unknown>>;
  const given = new Set<string>();
  const unsetList = overrides["params_unset"];
  const unset = new Set<unknown>(Array.isArray(unsetList) ? unsetList : []);
  for (const kind of KEYED_FIELDS) {
    const own = (overrides[kind] ?? {}) as Record<string, unknown>;
    const from = (base[kind] ?? {}) as Record<string, unknown>;
    const merged: Record<string, unknown> = {};
    for (const key of Object.keys(from)) if (!(kind === "params" && unset.has(key))) merged[key] = from[key];
    for (const key of Object.keys(own)) {
      if (kind === "tools" && isDisabledTool(own[key])) {
        delete merged[key];
        continue;
      }
      merged[key] = own[key];
      given.add(`${kind}.${key}`);
    }
    resolved[kind] = merged;
  }
  return { resolved, given };
}

/**
 * Why a resolved config breaks the cross-field rule, or null when it holds: when
 * `context_window > 0`, `input_token_limit + max_tokens <= context_window`.
 */
export function consistencyViolation(config: {
  readonly context_window: number;
  readonly input_token_limit: number;
  readonly max_tokens: number;
}): string | null {
  const window = config.context_window;
  if (window <= 0) return null;
  const needed = config.input_token_limit + config.max_tokens;
  if (needed <= window) return null;
  return (
    `input_token_limit (${config.input_token_limit}) + max_tokens (${config.max_tokens})` +
    ` = ${needed} exceeds context_window (${window})`
  );
}
