/**
 * Local copies of agents' bundles, kept current by one watch stream per agent and
 * environment (the Python SDK's `agent_variants/bundles.py`).
 *
 * `Bundles.start(agent, environment)` fetches the bundle (`GET .../bundle?environment=`, the
 * parameter left out for null: the service's default, the key's environment or production)
 * and starts its watch; from then on `answer(...)` reads memory only. Each (agent,
 * environment) pair has its own copy and watch; null is a pair of its own.
 *
 * `answer` resolves as the contract's "Resolution order" says (1.1), through `choose`: the
 * first targeting rule whose conditions all hold, else, with a subject, the running or
 * paused split's arm, else the bundle's `resolved`. A v1 bundle (no `rules`, no
 * `environment`) has no rules.
 *
 * The watch reconnects with jittered backoff (0.2 s doubling to 10 s, started over after a
 * stream that held) and `Last-Event-ID`, so a reconnect brings what changed meanwhile; while
 * it is down, each round revalidates the copy with `If-None-Match`, so a service that
 * answers requests but not streams (a proxy that cuts them) still keeps the copy current.
 *
 * How current a copy is: as old as the service's last word on it, a line on its stream
 * (the service sends one at least every 15 s, and a stream silent for `SILENT_AFTER`
 * seconds is replaced) or an answer to a revalidation. With `maxStaleness` set, a copy
 * whose stream has been quiet for `maxStaleness / 2` is revalidated, so a stream that stays
 * open but carries nothing (a proxy that buffers it) cannot pass a stale copy off as fresh.
 *
 * After the first fetch, the stream and revalidations name the agent by its id, so a rename
 * of its slug does not interrupt them. Only the service saying the agent is gone (`event:
 * deleted`, or a problem+json 404 `resource_missing`) drops the copy; any other failure, a
 * proxy's HTML 404 included, is an outage, through which the copy is served.
 *
 * Everything stops on `close()` (one AbortController). The backoff and revalidation timers
 * are unref'd, so they never keep a process alive by themselves; an open watch stream does
 * (it is a socket in use, as a server's is), which is why `AgentVariants.close()` matters.
 */

import { choose } from "./coalesce.js";
import type { SplitSpec } from "./coalesce.js";
import { ResolvedAgentConfig } from "./config.js";
import type { ResolvedAgentConfigJSON, Served } from "./config.js";
import { AgentVariantsError, NotFound, Unavailable, ValidationFailed, fromResponse } from "./errors.js";
import { Call, attempt, segment, send, url } from "./http.js";
import type { Connection } from "./http.js";
import { attributeErrors } from "./rules.js";
import type { Attributes } from "./rules.js";
import { readEvents } from "./sse.js";

/** The service sends `: keepalive` at least every 15 s; this long (ms) without a byte, the connection is presumed dead. */
export const SILENT_AFTER_MS = 20_000;
export const FIRST_DELAY_MS = 200;
export const MAX_DELAY_MS = 10_000;
/** The statuses in which a split serves its arms (the others end it, or have not begun it). */
const SERVING = new Set(["running", "paused"]);

/** Where the SDK says what went wrong in the background (a watch that failed, and so on). */
export interface Logger {
  warn(message: string): void;
}

/** How current an agent's copy is; one per copy, kept across bundle replacements. */
export class Freshness {
  /** When the service last vouched for the copy (`performance.now()`, ms). */
  confirmed = performance.now();

  age(): number {
    return performance.now() - this.confirmed;
  }
}

/** A rule of a bundle with the config it serves, ready to answer. */
export interface ServedRule {
  id: string;
  when: unknown;
  resolved: ResolvedAgentConfig;
}

/** The bundle's running (or paused) experiment or rollout: its assignment and each arm's config. */
export interface Split {
  spec: SplitSpec;
  arms: readonly ResolvedAgentConfig[];
}

type JSONObject = Record<string, unknown>;

function isObject(value: unknown): value is JSONObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** `config` as served: in the bundle's environment, by what served it (`how`). */
function served(config: ResolvedAgentConfig, environment: string | null, how: Partial<Served>): ResolvedAgentConfig {
  return config.with(environment !== null ? { ...how, environment } : how);
}

/** A rollout's current percent, where the bundle gives one (`percent`, or `progress.percent`). */
function percentOf(experiment: JSONObject): number | null {
  let percent = experiment["percent"];
  if (percent === undefined || percent === null) {
    const progress = experiment["progress"];
    percent = isObject(progress) ? progress["percent"] : null;
  }
  if (typeof percent !== "number" || !Number.isInteger(percent) || percent < 0 || percent > 100) return null;
  return percent;
}

/** The split a bundle's `experiment` serves, or null when it serves nothing (a status neither running nor paused; a v1 bundle has none: it runs). */
function splitOf(experiment: JSONObject, environment: string | null, log: Logger): Split | null {
  const status = experiment["status"] ?? "running";
  if (typeof status !== "string" || !SERVING.has(status)) return null;
  const kind = experiment["kind"] ?? "experiment";
  const source = kind === "rollout" ? "rollout" : "experiment";
  const arms = experiment["arms"] as JSONObject[];
  const id = experiment["id"] as string;
  const configs = arms.map((arm, index) =>
    served(ResolvedAgentConfig.fromJSON(arm["resolved"] as ResolvedAgentConfigJSON), environment, {
      source,
      experiment_id: id,
      arm: typeof arm["arm"] === "number" ? arm["arm"] : index,
      rule_id: null,
    }),
  );
  const percent = kind === "rollout" && arms.length === 2 ? percentOf(experiment) : null;
  const weights = arms.map((arm) => (typeof arm["weight"] === "number" ? arm["weight"] : 0));
  if (percent === null && weights.reduce((a, b) => a + b, 0) <= 0) {
    log.warn(`agent-variants: split ${id} gives neither a percent nor weights; not served`);
    return null;
  }
  return { spec: { salt: experiment["salt"] as string, weights, percent }, arms: configs };
}

/** One bundle (an agent in one environment), ready to answer. Immutable: a new bundle makes a new one. */
export class Local {
  constructor(
    readonly etag: string,
    readonly plain: ResolvedAgentConfig,
    readonly freshness: Freshness,
    readonly environment: string | null,
    readonly rules: readonly ServedRule[],
    readonly split: Split | null,
  ) {}

  static of(bundle: unknown, freshness: Freshness, log: Logger): Local {
    if (!isObject(bundle) || typeof bundle["etag"] !== "string" || !isObject(bundle["resolved"])) {
      throw new Unavailable("The service answered something that is not a bundle");
    }
    const environment = typeof bundle["environment"] === "string" ? bundle["environment"] : null;
    const rules = (Array.isArray(bundle["rules"]) ? (bundle["rules"] as JSONObject[]) : []).map((rule) => ({
      id: rule["id"] as string,
      when: rule["when"],
      resolved: served(ResolvedAgentConfig.fromJSON(rule["resolved"] as ResolvedAgentConfigJSON), environment, {
        source: "rule",
        rule_id: rule["id"] as string,
        experiment_id: null,
        arm: null,
      }),
    }));
    const experiment = bundle["experiment"];
    return new Local(
      bundle["etag"],
      served(ResolvedAgentConfig.fromJSON(bundle["resolved"] as unknown as ResolvedAgentConfigJSON), environment, {}),
      freshness,
      environment,
      rules,
      isObject(experiment) ? splitOf(experiment, environment, log) : null,
    );
  }
}

/** Throw `ValidationFailed` (naming every bad attribute) for attributes the service would refuse with a 422. */
export function checkAttributes(attributes: Attributes | null | undefined): void {
  const errors = attributeErrors(attributes);
  if (errors.length) {
    const detail = "Invalid attributes: " + errors.map((e) => `${e.param}: ${e.message}`).join("; ");
    const problem = { title: "Invalid request", status: 422, detail, code: "validation_error", errors };
    throw new ValidationFailed(detail, { status: 422, problem });
  }
}

/** What the service would answer from this bundle, in the contract's resolution order. */
export function resolveLocally(
  local: Local,
  subject: string | null | undefined,
  attributes: Attributes | null | undefined,
): ResolvedAgentConfig {
  // Nothing to choose between: the common case costs no call.
  if (local.rules.length === 0 && (local.split === null || subject === null || subject === undefined)) return local.plain;
  const choice = choose(local.rules, local.split === null ? null : local.split.spec, subject, attributes);
  if (choice.kind === "rule") return choice.rule.resolved;
  if (choice.kind === "split") return local.split!.arms[choice.arm] ?? local.plain;
  return local.plain;
}

/** What `resolve` returns from a copy (checked for staleness, its attributes validated). */
export function answer(
  local: Local,
  subject: string | null | undefined,
  maxStalenessMs: number | null,
  attributes: Attributes | null | undefined,
): ResolvedAgentConfig {
  if (attributes) {
    // A for-in finds whether there is any key without building an array.
    for (const _ in attributes) {
      checkAttributes(attributes);
      break;
    }
  }
  if (maxStalenessMs !== null && local.freshness.age() > maxStalenessMs) {
    throw new Unavailable(`No word from the service for over ${maxStalenessMs / 1000} s; the local copy may be stale`);
  }
  return resolveLocally(local, subject, attributes);
}

/** The service says the agent no longer exists. */
class Gone extends Error {
  override name = "Gone";
}

function gone(error: unknown): boolean {
  return error instanceof Gone || (error instanceof NotFound && error.code === "resource_missing");
}

/** A timer that never keeps the process alive by itself, ended early by `signal`. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref?.();
    signal.addEventListener("abort", done, { once: true });
  });
}

function jitter(ms: number): number {
  return ms * (0.5 + Math.random());
}

/** One copy: the agent as the caller names it, the environment, the current `Local`, and what stops its loops. */
class Copy {
  readonly controller: AbortController;

  constructor(
    readonly agent: string,
    readonly environment: string | null,
    public local: Local,
  ) {
    this.controller = new AbortController();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get name(): string {
    return this.environment !== null ? `'${this.agent}' in '${this.environment}'` : `'${this.agent}'`;
  }
}

/**
 * Every (agent, environment) this client resolves: its copy (read without awaiting), its
 * watch loop, and (with `maxStaleness`) the loop that revalidates a quiet copy.
 */
export class Bundles {
  private readonly conn: Connection;
  private readonly pollEveryMs: number | null;
  private readonly log: Logger;
  private readonly controller = new AbortController();
  /** Copies by environment (null: the service's default), then agent: two lookups, no key to build. */
  private readonly copies = new Map<string | null, Map<string, Copy>>();
  private readonly first = new Map<string | null, Map<string, Promise<Local>>>();
  private readonly loops = new Set<Promise<void>>();

  constructor(conn: Connection, options: { maxStalenessMs?: number | null; log: Logger }) {
    this.conn = conn;
    this.pollEveryMs = options.maxStalenessMs != null ? options.maxStalenessMs / 2 : null;
    this.log = options.log;
  }

  /** The copy of `agent` in `environment`, if held. The hot path: no allocation. */
  local(agent: string, environment: string | null): Local | undefined {
    return this.copies.get(environment)?.get(agent)?.local;
  }

  /** The copy, fetching it and starting its watch on first use (concurrent first calls share one fetch). */
  start(agent: string, environment: string | null): Promise<Local> {
    const held = this.local(agent, environment);
    if (held !== undefined) return Promise.resolve(held);
    let pending = this.first.get(environment);
    if (pending === undefined) this.first.set(environment, (pending = new Map()));
    let fetching = pending.get(agent);
    if (fetching === undefined) {
      const waiting = pending;
      fetching = this.fetchFirst(agent, environment).finally(() => waiting.delete(agent));
      pending.set(agent, fetching);
    }
    return fetching;
  }

  private async fetchFirst(agent: string, environment: string | null): Promise<Local> {
    const call = new Call("GET", `/v1/agents/${segment(agent)}/bundle`, { query: { environment } });
    const bundle = await send(this.conn, call, this.controller.signal);
    if (this.controller.signal.aborted) throw new Error("the client was closed");
    const copy = new Copy(agent, environment, Local.of(bundle, new Freshness(), this.log));
    let byAgent = this.copies.get(environment);
    if (byAgent === undefined) this.copies.set(environment, (byAgent = new Map()));
    byAgent.set(agent, copy);
    this.run(this.watch(copy));
    if (this.pollEveryMs !== null) this.run(this.keepConfirmed(copy, this.pollEveryMs));
    return copy.local;
  }

  private run(loop: Promise<void>): void {
    const tracked = loop.catch((error: unknown) => this.log.warn(`agent-variants: a watch loop ended: ${String(error)}`));
    this.loops.add(tracked);
    void tracked.finally(() => this.loops.delete(tracked));
  }

  /** End every watch and revalidation; resolves once they have all stopped. */
  async close(): Promise<void> {
    this.controller.abort();
    for (const byAgent of this.copies.values()) for (const copy of byAgent.values()) copy.controller.abort();
    this.copies.clear();
    await Promise.allSettled([...this.loops]);
  }

  private held(copy: Copy): boolean {
    return !copy.signal.aborted && this.copies.get(copy.environment)?.get(copy.agent) === copy;
  }

  /** The agent is gone: drop its copy (the next `resolve` asks again, and says NotFound) and end its loops. */
  private forget(copy: Copy): void {
    const byAgent = this.copies.get(copy.environment);
    if (byAgent?.get(copy.agent) === copy) byAgent.delete(copy.agent);
    copy.controller.abort();
  }

  private async watch(copy: Copy): Promise<void> {
    let delay = FIRST_DELAY_MS;
    let complaint: string | null = null;
    while (this.held(copy)) {
      const began = performance.now();
      let failed = false;
      try {
        await this.stream(copy);
        complaint = null;
      } catch (error) {
        if (copy.signal.aborted) return;
        if (gone(error)) return this.forget(copy);
        failed = true;
        complaint = this.complain(copy, "watch", error, complaint);
      }
      if (performance.now() - began > MAX_DELAY_MS) delay = FIRST_DELAY_MS; // the stream held: a new outage, a new backoff
      if (failed && this.pollEveryMs === null && this.held(copy)) {
        // With maxStaleness, keepConfirmed revalidates.
        try {
          await this.revalidate(copy);
        } catch (error) {
          if (copy.signal.aborted) return;
          if (gone(error)) return this.forget(copy);
          complaint = this.complain(copy, "revalidation", error, complaint);
        }
      }
      await pause(jitter(delay), copy.signal);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }

  /** Revalidate the copy whenever the service has said nothing of it for `maxStaleness / 2`, backing off while that fails. */
  private async keepConfirmed(copy: Copy, everyMs: number): Promise<void> {
    let failures = 0;
    let complaint: string | null = null;
    while (this.held(copy)) {
      const due = copy.local.freshness.confirmed + everyMs - performance.now();
      if (due > 0) {
        await pause(due, copy.signal);
        continue;
      }
      try {
        await this.revalidate(copy);
        failures = 0;
        complaint = null;
      } catch (error) {
        if (copy.signal.aborted) return;
        if (gone(error)) return this.forget(copy);
        failures++;
        complaint = this.complain(copy, "revalidation", error, complaint);
        await pause(jitter(Math.min(everyMs * 2 ** failures, MAX_DELAY_MS)), copy.signal);
      }
    }
  }

  /** One watch stream, read until it ends; its bundles replace the copy, and each of its lines (a keepalive too) vouches for it. */
  private async stream(copy: Copy): Promise<void> {
    const local = copy.local;
    const freshness = local.freshness;
    // One signal for this attempt: the copy's end, the connect timeout, then silence. Its
    // listener on the copy's signal goes when the attempt does (reconnects must not pile them up).
    const attemptCtl = new AbortController();
    const stop = (): void => attemptCtl.abort(copy.signal.reason);
    copy.signal.addEventListener("abort", stop, { once: true });
    let reason = new Error(`the watch did not answer within ${this.conn.timeoutMs ?? SILENT_AFTER_MS} ms`);
    let timer = setTimeout(() => attemptCtl.abort(reason), this.conn.timeoutMs ?? SILENT_AFTER_MS);
    timer.unref?.();
    try {
      const path = `/v1/agents/${segment(local.plain.agent_id)}/bundle/watch`;
      const query: Record<string, string> = copy.environment !== null ? { environment: copy.environment } : {};
      const response = await this.conn.fetch(url(this.conn, path, query), {
        method: "GET",
        headers: { ...this.conn.headers, Accept: "text/event-stream", "Last-Event-ID": local.etag },
        signal: attemptCtl.signal,
      });
      if (response.status !== 200) {
        const text = await response.text();
        let body: unknown = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch {
          body = null; // not problem+json (a proxy's page): an outage, never "gone"
        }
        if (response.status >= 400) throw fromResponse(response.status, body, response.headers);
        throw new Unavailable(`The watch answered ${response.status}`);
      }
      const type = response.headers.get("content-type") ?? "";
      if (!type.startsWith("text/event-stream") || response.body === null) {
        await response.body?.cancel();
        throw new Unavailable(`The watch answered ${JSON.stringify(type)}, not an event stream`);
      }
      clearTimeout(timer);
      reason = new Error(`the watch was silent for ${SILENT_AFTER_MS / 1000} s`);
      timer = setTimeout(() => attemptCtl.abort(reason), SILENT_AFTER_MS);
      timer.unref?.();
      const silence = timer;
      await readEvents(response.body, {
        onChunk: () => silence.refresh(),
        onLine: () => {
          freshness.confirmed = performance.now();
        },
        onEvent: (event) => {
          if (event.event === "deleted") throw new Gone(copy.agent);
          if (event.event === "bundle" && this.held(copy)) copy.local = Local.of(JSON.parse(event.data), freshness, this.log);
        },
      });
    } finally {
      clearTimeout(timer);
      copy.signal.removeEventListener("abort", stop);
    }
  }

  /** Ask for the bundle `If-None-Match` the copy: unchanged (304) or the new one. */
  private async revalidate(copy: Copy): Promise<void> {
    const local = copy.local;
    const asked = performance.now();
    const call = new Call("GET", `/v1/agents/${segment(local.plain.agent_id)}/bundle`, {
      query: { environment: copy.environment },
    });
    const { response, body } = await attempt(this.conn, call, {
      headers: { "If-None-Match": `"${local.etag}"` },
      signal: copy.signal,
    });
    if (response.status === 200) {
      const fresh = Local.of(body, local.freshness, this.log);
      // The stream may have brought a newer bundle while this was asked: never go back.
      if (copy.local === local && this.held(copy)) copy.local = fresh;
    } else if (response.status !== 304) {
      if (response.status >= 400) throw fromResponse(response.status, body, response.headers);
      throw new Unavailable(`Revalidation answered ${response.status}`);
    }
    local.freshness.confirmed = Math.max(local.freshness.confirmed, asked);
  }

  /** Log a failure once per kind, not once per retry. */
  private complain(copy: Copy, what: string, error: unknown, last: string | null): string {
    const kind = error instanceof AgentVariantsError ? `${error.name}:${error.status}` : (error as Error)?.name ?? "Error";
    if (kind !== last) {
      this.log.warn(`agent-variants: ${what} of ${copy.name} failed (${String(error)}); serving the last bundle, retrying`);
    }
    return kind;
  }
}
