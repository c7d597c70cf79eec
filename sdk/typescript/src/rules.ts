// STUB (scaffold): the semantics helper replaces this file with the real port of agent_variants/rules.py.
import type { Scalar } from "./config.js";

export type Op =
  | "eq" | "neq" | "in" | "not_in" | "contains" | "starts_with" | "ends_with"
  | "gt" | "gte" | "lt" | "lte" | "exists" | "not_exists";

export interface Condition {
  attribute: string;
  op: Op | string;
  value?: Scalar;
  values?: readonly Scalar[];
}

export interface Rule {
  id: string;
  name?: string;
  when: readonly Condition[];
  serve?: { variant: string };
}

export type Attributes = Readonly<Record<string, Scalar>>;

/** Every reason the service would refuse these attributes (`{param: "attributes.<name>", message}`); empty when it takes them. */
export function attributeErrors(_attributes: Attributes | null | undefined): { param: string; message: string }[] {
  throw new Error("not yet ported");
}

/** The first rule whose conditions all hold for the context (the very object passed in), or null. */
export function firstMatch<R extends { when?: unknown }>(
  _rules: readonly R[],
  _subject?: string | null,
  _attributes?: Attributes | null,
): R | null {
  throw new Error("not yet ported");
}
