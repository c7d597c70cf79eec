/**
 * Prompt templates (contract 1.1, "The config an agent really runs with"): finding their
 * placeholders and rendering them, exactly as the contract defines it (the Python SDK's
 * `agent_variants.templates`, pinned by the conformance cases).
 *
 * - A placeholder is `{{name}}`: two opening braces, optional spaces, an identifier
 *   (`^[A-Za-z_][A-Za-z0-9_]{0,63}$`), optional spaces, two closing braces.
 * - Every other brace is literal text, so JSON in a prompt needs no escaping. Reading left to
 *   right, a `{{` opens a placeholder that ends at the first `}}` after it; when what lies
 *   between is not an identifier with optional spaces, the template is invalid
 *   (`TemplateError`, the API's 422 `invalid_template`). A `{{` with no `}}` after it is text.
 * - Rendering replaces each placeholder with its variable's value: a string as it is, a
 *   boolean as `true`/`false`, a number as ECMAScript's Number::toString writes it.
 *
 * Linear in the template's length; no regular expression comes from a template.
 */
import type { Scalar } from "./config.js";
import type { ProblemError } from "./errors.js";

export const VARIABLE_NAME = "^[A-Za-z_][A-Za-z0-9_]{0,63}$";
const NAME = new RegExp(VARIABLE_NAME);
// What lies between the braces of a valid placeholder: spaces, an identifier, spaces.
const INSIDE = /^ *([A-Za-z_][A-Za-z0-9_]{0,63}) *$/;

export const VARIABLE_TYPES = ["string", "number", "integer", "boolean"] as const;

const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);

/** A declared variable as the templates read it: `{type, required?, default?}`. */
export interface VariableSpec {
  type?: string;
  required?: boolean;
  default?: Scalar;
  [extra: string]: unknown;
}

/**
 * A `{{` that opens no valid placeholder before its `}}`: `position` is the index of that
 * `{{` in characters (code points, as the service counts them), `text` what lies between.
 */
export class TemplateError extends Error {
  override name = "TemplateError";
  readonly position: number;
  readonly text: string;

  constructor(position: number, text: string) {
    super(
      `'{{${text}}}' at character ${position} is not a placeholder: ` +
        "write {{name}} with a name of letters, digits and _ (not starting with a digit)",
    );
    this.position = position;
    this.text = text;
  }
}

/** One placeholder: `start` is the index of its `{{`, `end` just past its `}}` (JS string indices). */
export interface Placeholder {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

/** How many characters (code points) `text` has before UTF-16 index `index`. */
function codePoints(text: string, index: number): number {
  let count = 0;
  for (let i = 0; i < index; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one character.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < index) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}

/** Every placeholder of the template, in order (a name may repeat). Throws `TemplateError` at the first `{{` that opens no valid placeholder. */
export function placeholders(template: string): Placeholder[] {
  const found: Placeholder[] = [];
  let at = template.indexOf("{{");
  while (at !== -1) {
    const close = template.indexOf("}}", at + 2);
    if (close === -1) break; // no `}}` after it: literal text, and so is everything after
    const inside = template.slice(at + 2, close);
    const match = INSIDE.exec(inside);
    if (match === null) throw new TemplateError(codePoints(template, at), inside);
    found.push({ name: match[1]!, start: at, end: close + 2 });
    at = template.indexOf("{{", close + 2);
  }
  return found;
}

/** The names the template uses, each once, in the order they first appear. */
export function variableNames(template: string): string[] {
  return [...new Set(placeholders(template).map((placeholder) => placeholder.name))];
}

export function isVariableName(name: string): boolean {
  return NAME.test(name);
}

/** ECMAScript's Number::toString of a finite number (`-0` as `0`): what every SDK renders. */
export function numberText(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`${value} is not a finite number`);
  return value === 0 ? "0" : String(value);
}

/** A variable's value as a template shows it. */
export function valueText(value: Scalar): string {
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return numberText(value);
  if (typeof value === "string") return value;
  throw new TypeError(`a variable's value is a string, a number or a boolean, not ${value === null ? "null" : typeof value}`);
}

/**
 * The template with each placeholder replaced by its value. Throws `TemplateError` for an
 * invalid template and a RangeError naming a placeholder `values` lacks (checking the
 * variables a config declares, and their defaults, is the caller's).
 */
export function render(template: string, values: Readonly<Record<string, Scalar>>): string {
  let text = "";
  let at = 0;
  for (const placeholder of placeholders(template)) {
    const value = hasOwn(values, placeholder.name) ? values[placeholder.name] : undefined;
    if (value === undefined) throw new RangeError(`no value for {{${placeholder.name}}}`);
    text += template.slice(at, placeholder.start) + valueText(value);
    at = placeholder.end;
  }
  return text + template.slice(at);
}

export type RenderErrorCode = "missing_variable" | "unknown_variable" | "validation_error";

/**
 * Variables a render refuses: `code` is the API's (`missing_variable`, `unknown_variable` or
 * `validation_error`, the first kind found in that order) and `errors` names every bad
 * variable (`{param, message}`, params like `variables.tone`), the missing ones first, then
 * the unknown, then the invalid.
 */
export class RenderError extends Error {
  override name = "RenderError";
  readonly code: RenderErrorCode;
  readonly errors: ProblemError[];

  constructor(code: RenderErrorCode, errors: ProblemError[]) {
    super(errors.map((e) => `${e.param}: ${e.message}`).join("; "));
    this.code = code;
    this.errors = errors;
  }
}

/**
 * Why `value` is not of the declared type, or null when it is. A whole number written with
 * a point (`40.0`) is that integer, as JSON Schema's `integer` holds it (in JS they are one).
 */
export function typeError(kind: string, value: unknown): string | null {
  if (kind === "string") return typeof value === "string" ? null : "must be a string";
  if (kind === "boolean") return typeof value === "boolean" ? null : "must be a boolean";
  const wanted = kind === "integer" ? "n integer" : " finite number";
  if (typeof value !== "number") return `must be a${wanted}`; // a boolean is never a number
  if (!Number.isFinite(value)) return `must be a${wanted} a double can hold`;
  if (kind === "integer" && !Number.isInteger(value)) return "must be a whole number";
  return null;
}

/**
 * The values a render uses: those `given`, checked against the `declared` variables
 * (`{name: {type, required?: true, default?}}`), with defaults filling the optional ones
 * left out. Throws `RenderError` naming every variable that is missing (required, no default,
 * not given), undeclared, or of the wrong type. A value or default of `undefined` is left
 * out, as `JSON.stringify` leaves it out of the service's request.
 */
export function resolveVariables(
  declared: Readonly<Record<string, VariableSpec>>,
  given: Readonly<Record<string, unknown>>,
): Record<string, Scalar> {
  const missing: ProblemError[] = [];
  const unknown: ProblemError[] = [];
  const invalid: ProblemError[] = [];
  const values: Record<string, Scalar> = {};
  for (const name of Object.keys(declared)) {
    const spec = declared[name]!;
    const value = hasOwn(given, name) ? given[name] : undefined;
    if (value !== undefined) {
      const problem = typeError(String(spec.type ?? "string"), value);
      if (problem !== null) invalid.push({ param: `variables.${name}`, message: problem });
      else values[name] = value as Scalar; // checked just above
    } else if (spec.default !== undefined) {
      values[name] = spec.default; // checked when declared
    } else if (spec.required === undefined || spec.required) {
      missing.push({ param: `variables.${name}`, message: "required, and has no default" });
    }
  }
  for (const name of Object.keys(given)) {
    if (given[name] !== undefined && !hasOwn(declared, name)) {
      unknown.push({ param: `variables.${name}`, message: "not a declared variable" });
    }
  }
  const code: RenderErrorCode | null = missing.length
    ? "missing_variable"
    : unknown.length
      ? "unknown_variable"
      : invalid.length
        ? "validation_error"
        : null;
  if (code !== null) throw new RenderError(code, [...missing, ...unknown, ...invalid]);
  return values;
}

/**
 * Each template (`{system, user}`) rendered with the checked variables (`resolveVariables`).
 * A placeholder of an optional variable given no value and no default renders as nothing.
 */
export function renderPrompt<K extends string>(
  templates: Readonly<Record<K, string>>,
  declared: Readonly<Record<string, VariableSpec>>,
  given: Readonly<Record<string, unknown>>,
): Record<K, string> {
  const values = resolveVariables(declared, given);
  const filled: Record<string, Scalar> = {};
  for (const name of Object.keys(declared)) if (!hasOwn(values, name)) filled[name] = "";
  Object.assign(filled, values);
  const out = {} as Record<K, string>;
  for (const key of Object.keys(templates) as K[]) out[key] = render(templates[key], filled);
  return out;
}
