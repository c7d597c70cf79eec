/**
 * A resolved config's prompt, rendered: `config.render(variables)` (contract 1.1, **Render**).
 *
 * One implementation, `templates.renderPrompt`, the rules of the service's `POST .../render`;
 * this module only turns its refusals into the SDK's errors (`RenderFailed`, a
 * `ValidationFailed`), so code that catches the service's 422s handles a local render alike.
 */
import type { Scalar, Variable } from "./config.js";
import { RenderFailed } from "./errors.js";
import type { Problem, ProblemError } from "./errors.js";
import { RenderError, TemplateError, placeholders, renderPrompt } from "./templates.js";

// The problem types and titles of the service's answers (its errors.py); a local refusal reads the same.
const TYPE_BASE = "https://agent-variants.dev/problems/";
const TITLES = {
  missing_variable: "Missing template variable",
  unknown_variable: "Unknown template variable",
  validation_error: "Invalid request",
  invalid_template: "Invalid template",
  undeclared_variable: "Undeclared template variable",
} as const;
type RenderFailedCode = keyof typeof TITLES;

/** Both templates of a config rendered: `system` (from `system_prompt`) and `user` (from `user_prompt_template`). Either may be empty. */
export interface RenderedPrompt {
  readonly system: string;
  readonly user: string;
}

const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);

/**
 * Both templates rendered with the `given` values checked against the `declared` variables
 * (`templates.renderPrompt`). Throws `RenderFailed`.
 *
 * A config the service serves has valid templates whose placeholders are all declared; one
 * that does not (built by hand, or from a service older than contract 1.1, which declares no
 * variables) is refused first, naming the field: `invalid_template` or `undeclared_variable`,
 * as the service refuses such a write.
 */
export function renderTemplates(
  systemPrompt: string,
  userPromptTemplate: string,
  declared: Readonly<Record<string, Variable>>,
  given: Readonly<Record<string, Scalar>>,
): RenderedPrompt {
  const invalid: ProblemError[] = [];
  const undeclared: ProblemError[] = [];
  const fields: [string, string][] = [
    ["system_prompt", systemPrompt],
    ["user_prompt_template", userPromptTemplate],
  ];
  for (const [field, template] of fields) {
    let names: Set<string>;
    try {
      names = new Set(placeholders(template).map((placeholder) => placeholder.name));
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error;
      invalid.push({ param: field, message: error.message });
      continue;
    }
    for (const name of names) {
      if (!hasOwn(declared, name)) undeclared.push({ param: field, message: `'{{${name}}}' is not a declared variable` });
    }
  }
  if (invalid.length || undeclared.length) {
    throw failed(invalid.length ? "invalid_template" : "undeclared_variable", [...invalid, ...undeclared]);
  }
  let rendered: { system: string; user: string };
  try {
    rendered = renderPrompt({ system: systemPrompt, user: userPromptTemplate }, declared, given);
  } catch (error) {
    if (error instanceof RenderError) throw failed(error.code, error.errors);
    throw error;
  }
  return Object.freeze({ system: rendered.system, user: rendered.user });
}

/** The error, with the problem+json body the service would answer. */
function failed(code: RenderFailedCode, errors: ProblemError[]): RenderFailed {
  const detail = errors.map((e) => `${e.param}: ${e.message}`).join("; ");
  const problem: Problem = {
    type: TYPE_BASE + code,
    title: TITLES[code],
    status: 422,
    detail,
    code,
    errors: errors.map((e) => ({ param: e.param, message: e.message })),
  };
  return new RenderFailed(detail, { status: 422, problem });
}
