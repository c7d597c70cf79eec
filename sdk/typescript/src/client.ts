/**
 * `AgentVariants`: the SDK's client (the Python SDK's `agent_variants/client.py`).
 *
 *     const client = new AgentVariants({ baseUrl: "http://config:8000", apiKey: "avk_..." });
 *     const config = await client.resolve("support-bot", { subject: "user-42", attributes: { plan: "pro" } });
 *     ...  // run the agent with config.model_name, config.render({...}), ...
 *     client.report("support-bot", { config, subject: "user-42", input_tokens: 812, output_tokens: 164, latency_ms: 1930, success: true });
 *     await client.close();
 *
 * The first `resolve` of an agent in an environment fetches its bundle and starts one
 * background watch that replaces the copy after every change; later calls read memory (the
 * targeting rule and the split's arm are computed locally, with the contract's functions).
 * When the service is unreachable the last bundle keeps being served, until `maxStaleness`
 * seconds without word from it, if set, after which `resolve` throws `Unavailable`. `report`
 * buffers; outcomes go out in batches in the background. `close()` flushes them and ends
 * the watches.
 *
 * Process lifetime: an open watch stream keeps Node's event loop alive, as an open server
 * does, so a program that is done must `close()` its client (every timer of the SDK is
 * unref'd, so nothing else holds it). A client never closed whose program ends with no
 * watch open (it only reported) still sends its outcomes: on `beforeExit` it closes itself,
 * as the Python SDK flushes at interpreter exit.
 */

import { Agents, Environments, Experiments, Keys, Rules, Variants } from "./admin.js";
import { Bundles, answer } from "./bundles.js";
import type { Logger } from "./bundles.js";
import type { ResolvedAgentConfig } from "./config.js";
import { connection } from "./http.js";
import type { Connection } from "./http.js";
import { CAPACITY, OutcomeBuffer, Sender, outcomeOf } from "./outcomes.js";
import type { Outcome, ReportStats } from "./outcomes.js";
import type { Attributes } from "./rules.js";

export const CLOSE_TIMEOUT_MS = 10_000;

export interface AgentVariantsOptions {
  /** The service's URL, `http://config:8000`. */
  baseUrl: string;
  /** An API key (`resolve` scope is enough to resolve and report). */
  apiKey?: string | null;
  /** The environment resolved and reported in when a call names none (default: the key's, else production). */
  environment?: string | null;
  /** Seconds without word from the service after which `resolve` throws `Unavailable` (default: never). */
  maxStaleness?: number | null;
  /** Milliseconds for one request attempt (default 5000; null: no limit). */
  timeoutMs?: number | null;
  /** How many outcomes may wait to be sent (default 100,000); past it, `report` drops and counts. */
  bufferCapacity?: number;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
  /** Where background failures are said (default: `console`). */
  logger?: Logger;
}

export interface ResolveOptions {
  /** Who the request is for: the experiment's or rollout's assignment, and the attribute `subject` of rules. */
  subject?: string | null;
  /** The context targeting rules see: strings, finite numbers, booleans. */
  attributes?: Attributes | null;
  /** The environment (slug or id); default: the client's. */
  environment?: string | null;
}

// Clients not closed, closed at `beforeExit` so their outcomes go out. One listener for all.
const open = new Set<AgentVariants>();
let hooked = false;

function closeForgotten(): void {
  for (const client of open) {
    client.close().catch((error: unknown) => console.warn(`agent-variants: closing a forgotten client failed: ${String(error)}`));
  }
}

export class AgentVariants {
  private readonly conn: Connection;
  private readonly environment: string | null;
  private readonly maxStalenessMs: number | null;
  private readonly bundles: Bundles;
  private readonly outcomes: OutcomeBuffer;
  private readonly log: Logger;
  private sender: Sender | null = null;
  private closed = false;
  /** The admin calls, mirroring the API and typed from its OpenAPI document (`client.agents.create({...})`). */
  readonly agents: Agents;
  readonly variants: Variants;
  readonly experiments: Experiments;
  readonly keys: Keys;
  readonly environments: Environments;
  readonly rules: Rules;
  private closing: Promise<void> | null = null;

  constructor(options: AgentVariantsOptions) {
    if (!options || typeof options.baseUrl !== "string" || !options.baseUrl) {
      throw new TypeError("new AgentVariants({ baseUrl, apiKey }): baseUrl is required");
    }
    const maxStaleness = options.maxStaleness ?? null;
    if (maxStaleness !== null && !(typeof maxStaleness === "number" && maxStaleness > 0 && Number.isFinite(maxStaleness))) {
      throw new RangeError(`maxStaleness is a positive number of seconds, not ${String(maxStaleness)}`);
    }
    const connOptions: Parameters<typeof connection>[0] = { baseUrl: options.baseUrl };
    if (options.apiKey !== undefined) connOptions.apiKey = options.apiKey;
    if (options.timeoutMs !== undefined) connOptions.timeoutMs = options.timeoutMs;
    if (options.fetch !== undefined) connOptions.fetch = options.fetch;
    this.conn = connection(connOptions);
    this.environment = options.environment ?? null;
    this.maxStalenessMs = maxStaleness === null ? null : maxStaleness * 1000;
    this.log = options.logger ?? console;
    this.bundles = new Bundles(this.conn, { maxStalenessMs: this.maxStalenessMs, log: this.log });
    this.outcomes = new OutcomeBuffer(options.bufferCapacity ?? CAPACITY);
    this.agents = new Agents(this.conn);
    this.variants = new Variants(this.conn);
    this.experiments = new Experiments(this.conn);
    this.keys = new Keys(this.conn);
    this.environments = new Environments(this.conn);
    this.rules = new Rules(this.conn);
  }

  /**
   * The agent's config for this context, from memory: the first targeting rule that holds,
   * else the subject's arm while a split runs, else the environment's config. The first call
   * for an agent and environment fetches its bundle (and throws `NotFound` for an unknown
   * agent). Attributes the service would refuse throw `ValidationFailed` naming each.
   *
   *     const config = await client.resolve("support-bot", { subject: "user-42", attributes: { plan: "pro" } });
   */
  async resolve(agent: string, options?: ResolveOptions): Promise<ResolvedAgentConfig> {
    if (this.closed) throw new Error("resolve() on a closed client");
    let environment = this.environment;
    let subject: string | null | undefined;
    let attributes: Attributes | null | undefined;
    if (options !== undefined) {
      if (options.environment != null) environment = options.environment;
      subject = options.subject;
      attributes = options.attributes;
      if (subject != null && typeof subject !== "string") throw new TypeError("resolve(): subject must be a string");
    }
    const local = this.bundles.local(agent, environment) ?? (await this.bundles.start(agent, environment));
    return answer(local, subject, this.maxStalenessMs, attributes);
  }

  /**
   * Buffer one outcome (sent within a second while the service answers); never waits. `config`,
   * the config the run used, fills `variant_id`, `experiment_id` and `environment`. A field
   * that is not the contract's, or of the wrong type, throws `TypeError` here.
   *
   *     client.report("support-bot", { config, input_tokens: 812, output_tokens: 164, latency_ms: 1930 });
   */
  report(agent: string, outcome: Outcome): void {
    if (this.closed) throw new Error("report() on a closed client");
    if (typeof agent !== "string" || !agent) throw new TypeError("report(): agent must be a non-empty string");
    const json = outcomeOf(outcome);
    if (this.environment !== null && !("environment" in json)) json["environment"] = this.environment;
    if (this.sender === null) {
      this.sender = new Sender(this.conn, this.outcomes, this.log);
      this.sender.start();
      open.add(this);
      // Node (and runtimes that mimic it) only: elsewhere there is no exit to hook.
      if (!hooked && typeof process !== "undefined" && typeof process.on === "function") {
        hooked = true;
        process.on("beforeExit", closeForgotten);
      }
    }
    this.outcomes.add(agent, json);
  }

  /**
   * Send every outcome reported so far (waiting at most `timeoutMs`, if set); what is unsent
   * then stays pending and goes out later under the same keys.
   *
   *     const stats = await client.flush(5000);   // {sent, pending: 0, dropped: 0, rejected: 0}
   */
  async flush(timeoutMs?: number): Promise<ReportStats> {
    if (this.sender !== null) {
      const flushed = this.sender.flush();
      if (timeoutMs === undefined) {
        await flushed;
      } else {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([flushed, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
        } finally {
          clearTimeout(timer);
        }
      }
    }
    return this.outcomes.stats();
  }

  /** How many outcomes were sent, are pending, were dropped (buffer full, or unsent at close) or rejected. */
  reportStats(): ReportStats {
    return this.outcomes.stats();
  }

  /**
   * Flush the outcomes (for up to `timeoutMs`), end the watches. Later calls of `resolve` and
   * `report` throw; closing again waits for the first close.
   */
  close(timeoutMs: number = CLOSE_TIMEOUT_MS): Promise<void> {
    if (this.closing === null) {
      this.closed = true;
      open.delete(this);
      this.closing = (async () => {
        try {
          this.outcomes.closed = true;
          if (this.sender !== null) await this.sender.close(timeoutMs);
        } finally {
          await this.bundles.close();
        }
      })();
    }
    return this.closing;
  }
}
