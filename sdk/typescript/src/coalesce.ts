// TEMPORARY (ts-runtime): a minimal working `choose` so the runtime's live tests can run
// before the semantics helper's real src/coalesce.ts lands; dropped at merge.
import { assign, rolloutArm } from "./assignment.js";
import { firstMatch } from "./rules.js";
import type { Attributes } from "./rules.js";

export interface SplitSpec {
  salt: string;
  weights: readonly number[];
  percent: number | null;
}

export type Choice<R> = { kind: "rule"; rule: R } | { kind: "split"; arm: number } | { kind: "plain" };

const PLAIN = { kind: "plain" } as const;

/** The contract's resolution order: the first rule that holds, else with a subject the split's arm, else plain. */
export function choose<R extends { when?: unknown }>(
  rules: readonly R[],
  split: SplitSpec | null,
  subject: string | null | undefined,
  attributes: Attributes | null | undefined,
): Choice<R> {
  if (rules.length) {
    const rule = firstMatch(rules, subject, attributes);
    if (rule !== null) return { kind: "rule", rule };
  }
  if (subject !== null && subject !== undefined && split !== null) {
    const arm = split.percent !== null ? rolloutArm(split.salt, subject, split.percent) : assign(split.salt, subject, split.weights);
    return { kind: "split", arm };
  }
  return PLAIN;
}
