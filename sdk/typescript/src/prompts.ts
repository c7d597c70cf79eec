// STUB (scaffold): the semantics helper replaces this file (render_templates of agent_variants/prompts.py).
import type { Scalar, Variable } from "./config.js";

/** Both templates of a config rendered: `system` and `user`. Either may be empty. */
export interface RenderedPrompt {
  readonly system: string;
  readonly user: string;
}

export function renderTemplates(
  _systemPrompt: string,
  _userPromptTemplate: string,
  _declared: Readonly<Record<string, Variable>>,
  _given: Readonly<Record<string, Scalar>>,
): RenderedPrompt {
  throw new Error("not yet ported");
}
