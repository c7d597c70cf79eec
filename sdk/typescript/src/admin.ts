/**
 * The admin calls, mirroring the HTTP API (the Python SDK's `agent_variants.admin`):
 * `agents`, `variants`, `experiments`, `keys`, and contract 1.1's `environments` and `rules`.
 *
 * Bodies and answers are the API's JSON objects, typed from the service's OpenAPI document
 * (src/generated/openapi.ts, `make sdk-ts-types`), so a field the API does not take is a
 * compile error and a new one shows up when the types are regenerated. Every `POST` carries an
 * `Idempotency-Key` (pass `idempotencyKey` to make a retry across processes safe as well);
 * `ifMatch` takes the object's `version` (or an ETag, or `"*"`). A list call returns one page,
 * continued with `{ after: page.last_id }`; `pages()` walks them all.
 *
 *     const variant = await admin.variants.create("support-bot", {
 *       variant_name: "Concise",
 *       overrides: { temperature: 0.2 },
 *     });
 *     await admin.variants.activate("support-bot", variant.slug, { ifMatch: variant.version });
 */

import type { components, paths } from "./generated/openapi.js";
import { Call, segment, send } from "./http.js";
import type { Connection, ETag, Method, Query } from "./http.js";

type Schemas = components["schemas"];

// ---- Types read off the generated `paths`: what each route takes and answers. ----

type Verb = "get" | "post" | "put" | "patch" | "delete";
type Operation<P extends keyof paths, V extends Verb> = NonNullable<paths[P][V]>;
type JsonOf<T> = T extends { content: { "application/json": infer Body } } ? Body : never;

/** The JSON body route `P` takes with `V`. */
export type RequestBody<P extends keyof paths, V extends Verb> =
  Operation<P, V> extends { requestBody?: infer R } ? JsonOf<NonNullable<R>> : never;

/** The JSON body of route `P`'s success answer to `V` (201 on create, else 200). */
export type ResponseBody<P extends keyof paths, V extends Verb> =
  Operation<P, V>["responses"] extends infer R
    ? R extends { 201: infer Created }
      ? JsonOf<Created>
      : R extends { 200: infer Ok }
        ? JsonOf<Ok>
        : never
    : never;

/** The query parameters route `P` takes with `V`. */
export type QueryParams<P extends keyof paths, V extends Verb> = NonNullable<Operation<P, V>["parameters"]["query"]>;

// ---- The objects, by the names users know them. ----

export type Agent = Schemas["AgentRead"];
export type AgentCreate = RequestBody<"/v1/agents", "post">;
export type AgentUpdate = RequestBody<"/v1/agents/{agent}", "patch">;
export type AgentConfig = Schemas["AgentConfigRead"];
export type Variant = Schemas["VariantRead"];
export type VariantCreate = RequestBody<"/v1/agents/{agent}/variants", "post">;
export type VariantUpdate = RequestBody<"/v1/agents/{agent}/variants/{variant}", "patch">;
export type ConfigOverrides = Schemas["ConfigOverrides"];
export type Experiment = Schemas["ExperimentRead"];
export type ExperimentCreate = RequestBody<"/v1/agents/{agent}/experiments", "post">;
export type ExperimentUpdate = RequestBody<"/v1/agents/{agent}/experiments/{experiment}", "patch">;
export type ExperimentResults = Schemas["ExperimentResults"];
export type GuardrailFigures = Schemas["GuardrailFiguresRead"];
export type ApiKey = Schemas["KeyRead"];
export type ApiKeyCreate = RequestBody<"/v1/keys", "post">;
export type Environment = Schemas["EnvironmentRead"];
export type EnvironmentCreate = RequestBody<"/v1/environments", "post">;
export type EnvironmentUpdate = RequestBody<"/v1/environments/{environment}", "patch">;
export type RuleSet = Schemas["RuleSetRead"];
export type RuleInput = Schemas["RuleIn"];
export type Revision = Schemas["RevisionRead"];
export type Undo = Schemas["UndoRead"];
export type Diff = Schemas["DiffRead"];
export type Usage = Schemas["Usage"];
export type Bundle = Schemas["BundleRead"];
export type Resolved = Schemas["ResolvedRead"];

/** One page of a list: `{ object: "list", data, first_id, last_id, has_more }`. */
export interface Page<T> {
  object: "list";
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

// ---- Options. ----

/** Every agent-scoped route takes an environment (slug or id); none: the key's, else `production`. */
export interface InEnvironment {
  environment?: string | null;
}

/** A change: who it is made for (`X-Actor`, recorded in the revision). */
export interface ChangeOptions extends InEnvironment {
  actor?: string | null;
}

/** A conditional change: `ifMatch` is the object's `version`, an ETag, or `"*"`. */
export interface IfMatchOptions extends ChangeOptions {
  ifMatch?: ETag | null;
}

/** A `POST`: its `Idempotency-Key` (else a fresh one, kept across the SDK's own retries). */
export interface PostOptions extends ChangeOptions {
  idempotencyKey?: string | null;
}

/** An action `POST` (activate, start, undo, ...): idempotent and conditional. */
export interface ActionOptions extends PostOptions {
  ifMatch?: ETag | null;
}

export interface PageOptions {
  /** 1-100 (the service's default: 20). */
  limit?: number | null;
  /** The `last_id` of the page already seen. */
  after?: string | null;
}

/** Options of every call: an `AbortSignal` ends it (and its retries). */
interface Signal {
  signal?: AbortSignal;
}

// ---- Plumbing. ----

type Options = Signal & {
  query?: Query;
  body?: unknown;
  ifMatch?: ETag | null;
  idempotencyKey?: string | null;
  actor?: string | null;
};

abstract class Namespace {
  protected readonly conn: Connection;

  constructor(conn: Connection) {
    this.conn = conn;
  }

  protected request<T>(method: Method, path: string, options: Options = {}): Promise<T> {
    const call = new Call(method, path, {
      body: options.body,
      query: options.query ?? {},
      ifMatch: options.ifMatch ?? null,
      idempotencyKey: options.idempotencyKey ?? null,
    });
    if (options.actor) call.headers["X-Actor"] = options.actor;
    return send<T>(this.conn, call, options.signal);
  }

  protected async nothing(method: Method, path: string, options: Options = {}): Promise<void> {
    await this.request<null>(method, path, options);
  }

  /** A `GET` in an environment, with `query` besides. */
  protected read<T>(path: string, options: InEnvironment & Signal, query: Query = {}): Promise<T> {
    return this.request("GET", path, { query: { ...query, environment: options.environment }, ...sig(options) });
  }

  /** A change in an environment: its options (ifMatch, idempotencyKey, actor, signal) and body. */
  protected write<T>(method: Method, path: string, options: ActionOptions & Signal, body?: unknown): Promise<T> {
    const { environment, ...rest } = options;
    return this.request(method, path, { ...rest, body, query: { environment } });
  }
}

function agentPath(agent: string): string {
  return `/v1/agents/${segment(agent)}`;
}

/** `{ "attr.plan": "pro" }` from `{ plan: "pro" }`: the context of `GET .../resolved`. */
function attributeQuery(attributes: Record<string, string | number | boolean> | undefined): Query {
  const query: Query = {};
  for (const [name, value] of Object.entries(attributes ?? {})) query[`attr.${name}`] = value;
  return query;
}

/**
 * Every item of a list, page after page (each page one request, fetched when the previous
 * one is used up): `for await (const agent of pages((after) => admin.agents.list({ after }))) ...`.
 */
export async function* pages<T>(
  list: (after: string | undefined) => Promise<Page<T>>,
): AsyncGenerator<T, void, undefined> {
  let after: string | undefined;
  for (;;) {
    const page = await list(after);
    yield* page.data;
    if (!page.has_more || page.last_id === null) return;
    after = page.last_id;
  }
}

// ---- The namespaces. ----

type ListOptions<Filters = object> = PageOptions & InEnvironment & Signal & Filters;

/**
 * `admin.agents`: agents, their resolution, usage, history and undo.
 *
 *     const agent = await admin.agents.create({
 *       name: "Support bot",
 *       config: { model_provider: "openai", model_name: "gpt-4o" },
 *     });
 *     await admin.agents.update(agent.slug, { config: { temperature: 0.3 } }, { ifMatch: agent.version });
 */
export class Agents extends Namespace {
  /** An agent (201); without `slug` it is derived from `name`. */
  create(body: AgentCreate, options: PostOptions & Signal = {}): Promise<Agent> {
    return this.write("POST", "/v1/agents", options, body);
  }

  /** One page of agents, newest first (`archived: true`: the archived ones). */
  list(options: ListOptions<{ archived?: boolean | null }> = {}): Promise<Page<Agent>> {
    return this.read("/v1/agents", options, { limit: options.limit, after: options.after, archived: options.archived });
  }

  /** An agent by id or slug. */
  get(agent: string, options: InEnvironment & Signal = {}): Promise<Agent> {
    return this.read(agentPath(agent), options);
  }

  /** A JSON merge patch over `name`, `slug`, `description`, `metadata`, `config`. */
  update(agent: string, patch: AgentUpdate, options: IfMatchOptions & Signal = {}): Promise<Agent> {
    return this.write("PATCH", agentPath(agent), options, patch);
  }

  /**
   * Archive an agent (contract 1.1: `unarchive` brings it back); `purge: true` erases an
   * archived one with everything it had (`admin`).
   */
  async delete(agent: string, options: IfMatchOptions & Signal & { purge?: boolean | null } = {}): Promise<void> {
    const { environment, purge, ...rest } = options;
    await this.nothing("DELETE", agentPath(agent), { ...rest, query: { environment, purge } });
  }

  /** Bring an archived agent back, as it was. */
  unarchive(agent: string, options: ActionOptions & Signal = {}): Promise<Agent> {
    return this.write("POST", `${agentPath(agent)}/unarchive`, options);
  }

  /**
   * The service's own resolution (`GET .../resolved`); the client's `resolve()` answers from
   * memory instead. `attributes` go as `attr.<name>`; `variant` previews one; `at` travels in time.
   */
  resolved(
    agent: string,
    options: InEnvironment &
      Signal & {
        subject?: string | null;
        attributes?: Record<string, string | number | boolean>;
        variant?: string | null;
        at?: string | null;
        explain?: boolean | null;
      } = {},
  ): Promise<Resolved> {
    const { subject, variant, at, explain, attributes } = options;
    return this.read(`${agentPath(agent)}/resolved`, options, {
      subject,
      variant,
      at,
      explain,
      ...attributeQuery(attributes),
    });
  }

  /** What the SDK resolves from (`etag`, `resolved`, `rules`, `experiment`). */
  bundle(agent: string, options: InEnvironment & Signal = {}): Promise<Bundle> {
    return this.read(`${agentPath(agent)}/bundle`, options);
  }

  /** Tokens and runs, by variant. */
  usage(agent: string, options: InEnvironment & Signal = {}): Promise<Usage> {
    return this.read(`${agentPath(agent)}/usage`, options);
  }

  /** One page of the agent's history, newest first (`targetId`: one variant's, one experiment's, ...). */
  revisions(agent: string, options: ListOptions<{ targetId?: string | null }> = {}): Promise<Page<Revision>> {
    const { limit, after, targetId } = options;
    return this.read(`${agentPath(agent)}/revisions`, options, { limit, after, target_id: targetId });
  }

  /** One revision (`before`, `after`: the whole objects). */
  revision(agent: string, revision: string, options: InEnvironment & Signal = {}): Promise<Revision> {
    return this.read(`${agentPath(agent)}/revisions/${segment(revision)}`, options);
  }

  /** Revert the agent's newest change not undone yet: `{ object: "undo", reverted_revision_id, revision }`. */
  undo(agent: string, options: ActionOptions & Signal = {}): Promise<Undo> {
    return this.write("POST", `${agentPath(agent)}/undo`, options);
  }
}

/**
 * `admin.variants`: an agent's variants, activation, restore and diff.
 *
 *     const draft = await admin.variants.create("support-bot", {
 *       variant_name: "Terse",
 *       clone_from: "base",
 *       overrides: { max_tokens: 256 },
 *     });
 *     await admin.variants.activate("support-bot", draft.slug, { ifMatch: draft.version });
 */
export class Variants extends Namespace {
  private path(agent: string, variant?: string, action?: string): string {
    let path = `${agentPath(agent)}/variants`;
    if (variant !== undefined) path += `/${segment(variant)}`;
    return action ? `${path}/${action}` : path;
  }

  /** A variant (201): `overrides` only, or a copy of `clone_from` (`"base"` or a variant) with `overrides` on top. */
  create(agent: string, body: VariantCreate, options: PostOptions & Signal = {}): Promise<Variant> {
    return this.write("POST", this.path(agent), options, body);
  }

  /** One page of the agent's variants (`isActive`: in the request's environment). */
  list(agent: string, options: ListOptions<{ isActive?: boolean | null }> = {}): Promise<Page<Variant>> {
    const { limit, after, isActive } = options;
    return this.read(this.path(agent), options, { limit, after, is_active: isActive });
  }

  /** A variant by id or slug. */
  get(agent: string, variant: string, options: InEnvironment & Signal = {}): Promise<Variant> {
    return this.read(this.path(agent, variant), options);
  }

  /** A JSON merge patch; an override set to `null` is removed (inherited again). */
  update(
    agent: string,
    variant: string,
    patch: VariantUpdate,
    options: IfMatchOptions & Signal = {},
  ): Promise<Variant> {
    return this.write("PATCH", this.path(agent, variant), options, patch);
  }

  /** Delete a variant (not an active one, nor one an experiment or a rule names). */
  async delete(agent: string, variant: string, options: IfMatchOptions & Signal = {}): Promise<void> {
    await this.write<null>("DELETE", this.path(agent, variant), options);
  }

  /** Make it the active variant (of the request's environment). */
  activate(agent: string, variant: string, options: ActionOptions & Signal = {}): Promise<Variant> {
    return this.write("POST", this.path(agent, variant, "activate"), options);
  }

  /** Leave the agent on its base config (a no-op when it is not active). */
  deactivate(agent: string, variant: string, options: ActionOptions & Signal = {}): Promise<Variant> {
    return this.write("POST", this.path(agent, variant, "deactivate"), options);
  }

  /** Put it back as it was right after a revision. */
  restore(agent: string, variant: string, revisionId: string, options: ActionOptions & Signal = {}): Promise<Variant> {
    const body: RequestBody<"/v1/agents/{agent}/variants/{variant}/restore", "post"> = { revision_id: revisionId };
    return this.write("POST", this.path(agent, variant, "restore"), options, body);
  }

  /** Resolved differences against `"base"` (default), another variant, or a revision. */
  diff(agent: string, variant: string, options: InEnvironment & Signal & { against?: string } = {}): Promise<Diff> {
    return this.read(this.path(agent, variant, "diff"), options, { against: options.against ?? "base" });
  }
}

/**
 * `admin.experiments`: A/B tests between variants and gradual rollouts, and their results.
 *
 *     const test = await admin.experiments.create("support-bot", {
 *       name: "terse vs base",
 *       arms: [{ variant: "base", weight: 1 }, { variant: "terse", weight: 1 }],
 *     });
 *     await admin.experiments.start("support-bot", test.id);
 *     (await admin.experiments.results("support-bot", test.id)).arms[1]?.vs_control;
 */
export class Experiments extends Namespace {
  private path(agent: string, experiment?: string, action?: string): string {
    let path = `${agentPath(agent)}/experiments`;
    if (experiment !== undefined) path += `/${segment(experiment)}`;
    return action ? `${path}/${action}` : path;
  }

  /** A draft (201): an experiment (`arms`), or a rollout (`kind: "rollout"`, `variant`, `steps`). */
  create(agent: string, body: ExperimentCreate, options: PostOptions & Signal = {}): Promise<Experiment> {
    return this.write("POST", this.path(agent), options, body);
  }

  /** One page of experiments (`status: "running"`, ...). */
  list(agent: string, options: ListOptions<{ status?: Experiment["status"] | null }> = {}): Promise<Page<Experiment>> {
    const { limit, after, status } = options;
    return this.read(this.path(agent), options, { limit, after, status });
  }

  get(agent: string, experiment: string, options: InEnvironment & Signal = {}): Promise<Experiment> {
    return this.read(this.path(agent, experiment), options);
  }

  /** A merge patch (arms, salt, steps and guardrails only while a draft). */
  update(
    agent: string,
    experiment: string,
    patch: ExperimentUpdate,
    options: IfMatchOptions & Signal = {},
  ): Promise<Experiment> {
    return this.write("PATCH", this.path(agent, experiment), options, patch);
  }

  /** Delete a draft. */
  async delete(agent: string, experiment: string, options: IfMatchOptions & Signal = {}): Promise<void> {
    await this.write<null>("DELETE", this.path(agent, experiment), options);
  }

  /** Start splitting traffic (every arm's config is snapshotted). */
  start(agent: string, experiment: string, options: ActionOptions & Signal = {}): Promise<Experiment> {
    return this.write("POST", this.path(agent, experiment, "start"), options);
  }

  /** Stop it (final; a rollout's traffic goes back to arm 0). */
  stop(agent: string, experiment: string, options: ActionOptions & Signal = {}): Promise<Experiment> {
    return this.write("POST", this.path(agent, experiment, "stop"), options);
  }

  /** Hold a rollout at its step (rollouts only; it keeps serving and guarding). */
  pause(agent: string, experiment: string, options: ActionOptions & Signal = {}): Promise<Experiment> {
    return this.write("POST", this.path(agent, experiment, "pause"), options);
  }

  /** Let a paused rollout advance again. */
  resume(agent: string, experiment: string, options: ActionOptions & Signal = {}): Promise<Experiment> {
    return this.write("POST", this.path(agent, experiment, "resume"), options);
  }

  /** Per-arm figures and tests against the control. */
  results(agent: string, experiment: string, options: InEnvironment & Signal = {}): Promise<ExperimentResults> {
    return this.read(this.path(agent, experiment, "results"), options);
  }

  /** One page of a rollout's guardrail figures over time, newest first. */
  guardrailHistory(agent: string, experiment: string, options: ListOptions = {}): Promise<Page<GuardrailFigures>> {
    const { limit, after } = options;
    return this.read(this.path(agent, experiment, "guardrail_history"), options, { limit, after });
  }
}

/**
 * `admin.keys` (an `admin` key): API keys. The secret is in `create`'s answer only.
 *
 *     const key = await admin.keys.create({ name: "billing-agent", scope: "resolve" });
 *     key.secret; // keep it: it is never shown again
 *     await admin.keys.revoke("billing-agent");
 */
export class Keys extends Namespace {
  /** A key (201); `environment` binds it to that environment (it works there only). */
  create(body: ApiKeyCreate, options: { idempotencyKey?: string | null } & Signal = {}): Promise<ApiKey> {
    return this.request("POST", "/v1/keys", { ...options, body });
  }

  /** One page of keys, never their secrets. */
  list(options: PageOptions & Signal = {}): Promise<Page<ApiKey>> {
    return this.request("GET", "/v1/keys", { query: { limit: options.limit, after: options.after }, ...sig(options) });
  }

  /** A key by id or name. */
  get(key: string, options: Signal = {}): Promise<ApiKey> {
    return this.request("GET", `/v1/keys/${segment(key)}`, sig(options));
  }

  /** Revoke a key, everywhere within a second. */
  revoke(key: string, options: Signal = {}): Promise<void> {
    return this.nothing("DELETE", `/v1/keys/${segment(key)}`, sig(options));
  }
}

/** Options of a change to an environment (not itself in one). */
type EnvironmentChange = { ifMatch?: ETag | null; actor?: string | null } & Signal;

/**
 * `admin.environments` (contract 1.1; writes need `admin`): where variants are active, rules
 * apply and experiments run. Every installation has `production`.
 *
 *     await admin.environments.create({ name: "Staging" });
 *     await admin.variants.activate("support-bot", "terse", { environment: "staging" });
 */
export class Environments extends Namespace {
  create(
    body: EnvironmentCreate,
    options: { idempotencyKey?: string | null; actor?: string | null } & Signal = {},
  ): Promise<Environment> {
    return this.request("POST", "/v1/environments", { ...options, body });
  }

  list(options: PageOptions & Signal = {}): Promise<Page<Environment>> {
    const query = { limit: options.limit, after: options.after };
    return this.request("GET", "/v1/environments", { query, ...sig(options) });
  }

  /** An environment by id or slug. */
  get(environment: string, options: Signal = {}): Promise<Environment> {
    return this.request("GET", `/v1/environments/${segment(environment)}`, sig(options));
  }

  /** A merge patch over `name` and `description` (the slug never changes). */
  update(environment: string, patch: EnvironmentUpdate, options: EnvironmentChange = {}): Promise<Environment> {
    return this.request("PATCH", `/v1/environments/${segment(environment)}`, { ...options, body: patch });
  }

  /** Delete an environment nothing is active, ruled or running in (never `production`). */
  delete(environment: string, options: EnvironmentChange = {}): Promise<void> {
    return this.nothing("DELETE", `/v1/environments/${segment(environment)}`, options);
  }
}

/**
 * `admin.rules` (contract 1.1): an agent's ordered targeting rules in one environment,
 * read and replaced whole.
 *
 *     const set = await admin.rules.get("support-bot", { environment: "production" });
 *     await admin.rules.replace("support-bot", [
 *       { name: "pro", when: [{ attribute: "plan", op: "eq", value: "pro" }], serve: { variant: "terse" } },
 *     ], { environment: "production", ifMatch: set.version });
 */
export class Rules extends Namespace {
  /** The rule set (version 0 and no rules when never written). */
  get(agent: string, options: InEnvironment & Signal = {}): Promise<RuleSet> {
    return this.read(`${agentPath(agent)}/rules`, options);
  }

  /** Replace the whole set (an identical set is a no-op); a rule sent without `id` keeps its name's. */
  replace(agent: string, rules: RuleInput[], options: IfMatchOptions & Signal = {}): Promise<RuleSet> {
    const body: RequestBody<"/v1/agents/{agent}/rules", "put"> = { rules };
    return this.write("PUT", `${agentPath(agent)}/rules`, options, body);
  }
}

/** The admin namespaces over one connection; the client exposes them as `client.agents`, .... */
export class Admin {
  readonly agents: Agents;
  readonly variants: Variants;
  readonly experiments: Experiments;
  readonly keys: Keys;
  readonly environments: Environments;
  readonly rules: Rules;

  constructor(conn: Connection) {
    this.agents = new Agents(conn);
    this.variants = new Variants(conn);
    this.experiments = new Experiments(conn);
    this.keys = new Keys(conn);
    this.environments = new Environments(conn);
    this.rules = new Rules(conn);
  }
}

function sig(options: Signal): Signal {
  return options.signal ? { signal: options.signal } : {};
}
