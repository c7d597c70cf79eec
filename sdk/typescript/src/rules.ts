/**
 * Targeting rules: which rule of an ordered set serves a request's context, exactly as the
 * contract defines it (the Python SDK's `agent_variants.rules`, pinned by the conformance cases).
 *
 * - The context is the request's subject and attributes. The attribute `subject` is the
 *   subject (missing without one); an attribute may not be named `subject`.
 * - A numeric string matches `^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$` (ASCII digits,
 *   nothing before or after). Numbers, numeric strings and values compare as IEEE-754
 *   doubles: `"1e400"` is Infinity, `"-0"` equals `0`, NaN equals nothing.
 * - A boolean is never a number: a number value never matches a boolean attribute, nor a
 *   boolean value a number.
 * - `eq`: a number value matches a number or numeric string of equal value; a boolean value
 *   that boolean or the exact string `"true"`/`"false"`; a string value an identical string.
 *   `in`: some `eq` holds. `neq`, `not_in`: the negation, for a present attribute.
 *   `contains`, `starts_with`, `ends_with`: string value, string attribute, case-sensitive.
 *   `gt`, `gte`, `lt`, `lte`: number value, attribute a number or numeric string.
 *   `exists`, `not_exists`: no value. Anything else on a present attribute (another type, an
 *   unknown op, a malformed condition), and every op but `not_exists` on a missing one, is false.
 * - A rule holds when all its conditions hold; the first rule that holds is the answer. A
 *   rule with no conditions holds for nothing.
 *
 * An attribute whose value is `undefined` is missing: `JSON.stringify` leaves it out, so the
 * service would never see it either.
 */
import type { Scalar } from "./config.js";

export type Op =
  | "eq" | "neq" | "in" | "not_in" | "contains" | "starts_with" | "ends_with"
  | "gt" | "gte" | "lt" | "lte" | "exists" | "not_exists";

/** Every op, in the contract's order. */
export const OPS: readonly Op[] = [
  "eq", "neq", "in", "not_in", "contains", "starts_with", "ends_with",
  "gt", "gte", "lt", "lte", "exists", "not_exists",
];

/** One condition: `value` for most ops, `values` for `in`/`not_in`, neither for `exists`/`not_exists`. */
export interface Condition {
  attribute: string;
  op: Op | string;
  value?: Scalar;
  values?: readonly Scalar[];
}

/** A rule as the API writes it (a bundle's rule adds its served config); only `when` is read. */
export interface Rule {
  id: string;
  name?: string;
  when: readonly Condition[];
  serve?: { variant: string };
}

export type Attributes = Readonly<Record<string, Scalar>>;

export const SUBJECT = "subject";
export const NUMERIC_STRING = "^-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?$";
// Built once: no pattern is ever built per call, nor taken from a rule. Without the `m` flag
// `$` is the end of the input only, so "1\n" does not match.
const NUMERIC = new RegExp(NUMERIC_STRING);

// The limits the service puts on the attributes it is sent (contract 1.1, "Targeting rules
// and context"), checked by `attributeErrors`.
export const MAX_ATTRIBUTES = 50;
export const ATTRIBUTE_MAX_LENGTH = 64;
export const ATTRIBUTE_PATTERN = "^[A-Za-z0-9_.-]+$";
export const VALUE_MAX_LENGTH = 1_024;
const ATTRIBUTE_NAME = new RegExp(ATTRIBUTE_PATTERN);

const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);

/** True when `value` is a numeric string of the contract. */
export function isNumericString(value: string): boolean {
  return NUMERIC.test(value);
}

/** A value's kind for messages: `null`, `array`, `object`, `function`, ... */
function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** A string attribute read as a number (a numeric string), or null. */
function stringNumber(text: string): number | null {
  return NUMERIC.test(text) ? Number(text) : null; // Number("1e400") is Infinity, as the contract says
}

/** A string attribute read as a boolean (exactly "true"/"false"), or null. */
function stringBoolean(text: string): boolean | null {
  return text === "true" ? true : text === "false" ? false : null;
}

/** Whether the condition's value is `eq` to the (present) attribute. */
function eq(value: unknown, attribute: Scalar): boolean {
  if (typeof value === "boolean") {
    if (typeof attribute === "boolean") return attribute === value;
    return typeof attribute === "string" && stringBoolean(attribute) === value;
  }
  if (typeof value === "number") {
    if (typeof attribute === "number") return attribute === value; // NaN never, -0 === 0
    return typeof attribute === "string" && stringNumber(attribute) === value;
  }
  if (typeof value === "string") return attribute === value;
  return false; // not a value at all: nothing is equal to it
}

/** Whether some value is `eq` to the attribute. */
function isIn(values: readonly unknown[], attribute: Scalar): boolean {
  if (typeof attribute === "string") {
    // A string equals only an identical string, so includes() is eq for string values; only
    // a string that reads as a number or a boolean needs a look at the other values.
    if (values.includes(attribute)) return true;
    const number = stringNumber(attribute);
    const boolean = stringBoolean(attribute);
    if (number === null && boolean === null) return false;
    for (const item of values) {
      if (typeof item === "number" ? item === number : typeof item === "boolean" && item === boolean) return true;
    }
    return false;
  }
  for (const item of values) if (eq(item, attribute)) return true;
  return false;
}

/** Whether one condition holds for the attribute it names (undefined: missing). */
function holds(condition: Record<string, unknown>, attribute: Scalar | undefined): boolean {
  const op = condition["op"];
  if (attribute === undefined) return op === "not_exists";
  switch (op) {
    case "exists":
      return true;
    case "eq":
      return eq(condition["value"], attribute);
    case "neq": {
      const value = condition["value"];
      const isValue = typeof value === "string" || typeof value === "number" || typeof value === "boolean";
      return isValue && !eq(value, attribute);
    }
    case "in":
    case "not_in": {
      const values = condition["values"];
      if (!Array.isArray(values) || values.length === 0) return false; // malformed: 1 to 1,000 values
      const found = isIn(values, attribute);
      return op === "in" ? found : !found;
    }
    case "contains":
    case "starts_with":
    case "ends_with": {
      const value = condition["value"];
      if (typeof value !== "string" || typeof attribute !== "string") return false;
      if (op === "contains") return attribute.includes(value);
      return op === "starts_with" ? attribute.startsWith(value) : attribute.endsWith(value);
    }
    case "gt":
    case "gte":
    case "lt":
    case "lte": {
      const value = condition["value"];
      if (typeof value !== "number") return false; // a boolean is never a number
      const number =
        typeof attribute === "number" ? attribute : typeof attribute === "string" ? stringNumber(attribute) : null;
      if (number === null) return false;
      if (op === "gt") return number > value;
      if (op === "gte") return number >= value;
      if (op === "lt") return number < value;
      return number <= value;
    }
    default:
      return false; // not_exists on a present attribute, or an op this SDK does not know
  }
}

/** Throws for a context the API would refuse: an attribute named `subject`, a value that is not a scalar, a subject that is not a string. */
function checkContext(subject: unknown, attributes: Attributes | null | undefined): void {
  if (attributes) {
    for (const name in attributes) {
      if (!hasOwn(attributes, name)) continue;
      if (name === SUBJECT) throw new RangeError("'subject' cannot be an attribute: pass it as the subject");
      const value: unknown = attributes[name];
      if (value === undefined) continue; // missing, as on the wire
      if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
        throw new TypeError(`attribute '${name}' must be a string, a number or a boolean, not ${kindOf(value)}`);
      }
    }
  }
  if (subject !== null && subject !== undefined && typeof subject !== "string") {
    throw new TypeError(`the subject must be a string, not ${kindOf(subject)}`);
  }
}

/**
 * The attributes rules see: `attributes` (those not undefined) and, with a subject, `subject`.
 * Throws a RangeError for an attribute named `subject` and a TypeError for a value that is not a
 * string, a number or a boolean (or a subject that is not a string).
 */
export function contextAttributes(
  subject: string | null | undefined,
  attributes: Attributes | null | undefined,
): Record<string, Scalar> {
  checkContext(subject, attributes);
  const merged: Record<string, Scalar> = {};
  if (attributes) {
    for (const name in attributes) {
      const value = attributes[name];
      if (hasOwn(attributes, name) && value !== undefined) merged[name] = value;
    }
  }
  if (subject !== null && subject !== undefined) merged[SUBJECT] = subject;
  return merged;
}

/** Why an attribute's value cannot be sent, or null when it can. */
function valueError(value: unknown): string | null {
  if (typeof value === "boolean") return null;
  if (typeof value === "number") return Number.isFinite(value) ? null : "must be a finite number";
  if (typeof value === "string") {
    // The service counts characters (code points); a string of at most that many UTF-16
    // units has no more code points, so only a longer one is counted.
    if (value.length <= VALUE_MAX_LENGTH) return null;
    let count = 0;
    for (const _ of value) if (++count > VALUE_MAX_LENGTH) return `must be at most ${VALUE_MAX_LENGTH} characters`;
    return null;
  }
  return `must be a string, a number or a boolean, not ${kindOf(value)}`;
}

/**
 * Every reason the service would refuse these context attributes, as problem+json `errors`
 * (`{param: "attributes.<name>", message}`); empty when it would take them.
 *
 * At most 50 attributes; names 1-64 characters of [A-Za-z0-9_.-], never `subject` (the
 * request's subject has its own parameter); values strings up to 1,024 characters, finite
 * numbers or booleans. An undefined value is left out, as `JSON.stringify` leaves it.
 */
export function attributeErrors(attributes: Attributes | null | undefined): { param: string; message: string }[] {
  if (!attributes) return [];
  const errors: { param: string; message: string }[] = [];
  const names = Object.keys(attributes).filter((name) => attributes[name] !== undefined);
  if (names.length > MAX_ATTRIBUTES) {
    errors.push({ param: "attributes", message: `at most ${MAX_ATTRIBUTES} attributes, not ${names.length}` });
  }
  for (const name of names) {
    const param = `attributes.${name}`;
    if (name === SUBJECT) {
      errors.push({ param, message: "'subject' cannot be an attribute: pass it as the subject" });
    } else if (name.length < 1 || name.length > ATTRIBUTE_MAX_LENGTH || !ATTRIBUTE_NAME.test(name)) {
      errors.push({ param, message: `a name is 1-${ATTRIBUTE_MAX_LENGTH} characters of A-Z, a-z, 0-9, _ . -` });
    }
    const problem = valueError(attributes[name]);
    if (problem !== null) errors.push({ param, message: problem });
  }
  return errors;
}

/**
 * The first rule, in order, whose conditions all hold for the context (the very object
 * passed in); null when none does.
 *
 * Pure and deterministic: the same rules and context give the same rule, in the server and
 * every SDK. Throws for a context the API would refuse (see `contextAttributes`). On
 * `resolve()`'s path, so it allocates nothing: attributes are read where they are.
 */
export function firstMatch<R extends { when?: unknown }>(
  rules: readonly R[],
  subject?: string | null,
  attributes?: Attributes | null,
): R | null {
  checkContext(subject, attributes);
  for (const rule of rules) {
    const when = rule.when;
    if (!Array.isArray(when) || when.length === 0) continue; // malformed (1 to 20 conditions): holds for nothing
    let all = true;
    for (const condition of when as unknown[]) {
      if (typeof condition !== "object" || condition === null || Array.isArray(condition)) {
        all = false;
        break;
      }
      const fields = condition as Record<string, unknown>;
      const name = fields["attribute"];
      let attribute: Scalar | undefined;
      if (typeof name !== "string") attribute = undefined;
      else if (name === SUBJECT) attribute = subject ?? undefined;
      else attribute = attributes && hasOwn(attributes, name) ? attributes[name] : undefined;
      if (!holds(fields, attribute)) {
        all = false;
        break;
      }
    }
    if (all) return rule;
  }
  return null;
}
