// TEMPORARY (ts-runtime): a minimal working port of agent_variants/rules.py so the runtime's
// live tests can run before the semantics helper's real src/rules.ts lands; dropped at merge.
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

const NUMERIC = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

interface View {
  text: string | null;
  number: number | null;
  boolean: boolean | null;
}

function view(value: Scalar): View {
  if (typeof value === "boolean") return { text: null, number: null, boolean: value };
  if (typeof value === "number") return { text: null, number: value, boolean: null };
  return {
    text: value,
    number: NUMERIC.test(value) ? Number(value) : null,
    boolean: value === "true" ? true : value === "false" ? false : null,
  };
}

function eq(value: unknown, a: View): boolean {
  if (typeof value === "boolean") return a.boolean === value;
  if (typeof value === "number") return a.number !== null && a.number === value;
  if (typeof value === "string") return a.text !== null && a.text === value;
  return false;
}

function holds(c: Record<string, unknown>, a: View | null): boolean {
  const op = c["op"];
  if (a === null) return op === "not_exists";
  if (op === "exists") return true;
  const value = c["value"];
  switch (op) {
    case "eq":
      return eq(value, a);
    case "neq":
      return (typeof value === "string" || typeof value === "number" || typeof value === "boolean") && !eq(value, a);
    case "in":
    case "not_in": {
      const values = c["values"];
      if (!Array.isArray(values) || values.length === 0) return false;
      const found = values.some((v) => eq(v, a));
      return op === "in" ? found : !found;
    }
    case "contains":
    case "starts_with":
    case "ends_with":
      if (typeof value !== "string" || a.text === null) return false;
      if (op === "contains") return a.text.includes(value);
      return op === "starts_with" ? a.text.startsWith(value) : a.text.endsWith(value);
    case "gt":
    case "gte":
    case "lt":
    case "lte":
      if (typeof value !== "number" || a.number === null) return false;
      if (op === "gt") return a.number > value;
      if (op === "gte") return a.number >= value;
      if (op === "lt") return a.number < value;
      return a.number <= value;
    default:
      return false;
  }
}

/** Every reason the service would refuse these attributes (`{param: "attributes.<name>", message}`); empty when it takes them. */
export function attributeErrors(attributes: Attributes | null | undefined): { param: string; message: string }[] {
  if (!attributes) return [];
  const errors: { param: string; message: string }[] = [];
  const names = Object.keys(attributes);
  if (names.length > 50) errors.push({ param: "attributes", message: `at most 50 attributes, not ${names.length}` });
  for (const name of names) {
    const param = `attributes.${name}`;
    const value: unknown = attributes[name];
    if (name === "subject") errors.push({ param, message: "'subject' cannot be an attribute: pass it as the subject" });
    else if (!NAME.test(name)) errors.push({ param, message: "a name is 1-64 characters of A-Z, a-z, 0-9, _ . -" });
    if (typeof value === "number") {
      if (!Number.isFinite(value)) errors.push({ param, message: "must be a finite number" });
    } else if (typeof value === "string") {
      if (value.length > 1024 && [...value].length > 1024) errors.push({ param, message: "must be at most 1024 characters" });
    } else if (typeof value !== "boolean") {
      errors.push({ param, message: `must be a string, a number or a boolean, not ${value === null ? "null" : typeof value}` });
    }
  }
  return errors;
}

/** The first rule whose conditions all hold for the context (the very object passed in), or null. */
export function firstMatch<R extends { when?: unknown }>(
  rules: readonly R[],
  subject?: string | null,
  attributes?: Attributes | null,
): R | null {
  const present = new Map<string, Scalar>();
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (name === "subject") throw new RangeError("'subject' cannot be an attribute: pass it as the subject");
    present.set(name, value);
  }
  if (subject !== null && subject !== undefined) present.set("subject", subject);
  for (const rule of rules) {
    const when = rule.when;
    if (!Array.isArray(when) || when.length === 0) continue;
    const all = when.every((c: unknown) => {
      if (c === null || typeof c !== "object") return false;
      const condition = c as Record<string, unknown>;
      const name = condition["attribute"];
      const value = typeof name === "string" ? present.get(name) : undefined;
      return holds(condition, value === undefined ? null : view(value));
    });
    if (all) return rule;
  }
  return null;
}
