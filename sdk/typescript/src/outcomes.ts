/**
 * `report()`: outcomes buffered in memory and sent in batches, never blocking the agent (the
 * Python SDK's `agent_variants/outcomes.py`).
 *
 * `OutcomeBuffer.add` is all an agent's `report` costs: a check of the field names and types
 * (a `TypeError` at the call site: a value that cannot be sent must never reach the buffer,
 * where it would sink its whole batch) and a push. When the buffer is full, the outcome is
 * dropped and counted, never waited for. `Sender` drains the buffer at least every second
 * (at once when 1,000 are waiting), in batches of up to 1,000 per agent. Each batch gets its
 * own `Idempotency-Key`, kept across its retries, so a batch whose answer was lost is stored
 * once, not twice. A batch the service refuses naming some of its items (422 invalid, 404 for
 * an `experiment_id` it does not know) is sent again without them under a new key; those are
 * counted as rejected. An outcome carries the `environment` its config was resolved in
 * (contract 1.1); a service that predates environments refuses that field (422 naming only
 * `data[i].environment` as unknown), and the batch is sent again without it.
 *
 * The sender's timers are unref'd: they never keep a process alive by themselves.
 */

import type { ResolvedAgentConfig } from "./config.js";
import { AgentVariantsError, NotFound, RateLimited, Unavailable, ValidationFailed } from "./errors.js";
import { Call, newIdempotencyKey, segment, send } from "./http.js";
import type { Connection } from "./http.js";
import type { Logger } from "./bundles.js";

export const BATCH = 1000; // the service's largest batch
export const EVERY_MS = 1000; // the longest an outcome waits in the buffer while the service answers
export const CAPACITY = 100_000;
const RETRY_FIRST_MS = 200;
const RETRY_MAX_MS = 10_000;
/** A server error that is not an outage (a 500: a bug) is tried this many times, then refused. */
const SERVER_ERROR_ATTEMPTS = 5;
const ITEM = /^data\[(\d+)\]/;

/** One outcome as `report()` takes it: the contract's fields, and the config the run used. */
export interface Outcome {
  /** What the run resolved: fills `variant_id`, `experiment_id` and `environment` unless given. */
  config?: ResolvedAgentConfig | null;
  subject?: string | null;
  input_tokens?: number | null;
  output_tokens?: number | null;
  latency_ms?: number | null;
  cost_usd?: number | null;
  success?: boolean | null;
  score?: number | null;
  variant_id?: string | null;
  experiment_id?: string | null;
  environment?: string | null;
}

/** An outcome as sent. */
export type OutcomeJSON = Record<string, string | number | boolean | null>;

const COUNTS = new Set(["input_tokens", "output_tokens"]);
const NUMBERS = new Set(["latency_ms", "cost_usd", "score"]);
const STRINGS = new Set(["subject", "variant_id", "experiment_id", "environment"]);
const FIELDS = [...COUNTS, ...NUMBERS, ...STRINGS, "success"].sort();

function kindOf(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

/** A field's value as JSON carries it, or the error at the call site. */
function checked(name: string, value: unknown): string | number | boolean {
  if (COUNTS.has(name)) {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw new TypeError(`report(): ${name} must be an integer, not ${typeof value === "number" ? value : kindOf(value)}`);
    }
    return value;
  }
  if (NUMBERS.has(name)) {
    if (typeof value !== "number") throw new TypeError(`report(): ${name} must be a number, not ${kindOf(value)}`);
    if (!Number.isFinite(value)) throw new RangeError(`report(): ${name} must be finite, not ${value}`);
    return value;
  }
  if (name === "success") {
    if (typeof value !== "boolean") throw new TypeError(`report(): success must be a boolean, not ${kindOf(value)}`);
    return value;
  }
  if (typeof value !== "string") throw new TypeError(`report(): ${name} must be a string, not ${kindOf(value)}`);
  return value;
}

/**
 * The outcome's JSON: `config` (what the run resolved) fills `variant_id`, `experiment_id`
 * and `environment` (where it was resolved); the other fields are the contract's. Names and
 * types are checked here (`TypeError`, `RangeError` for the caller); ranges by the service.
 */
export function outcomeOf(outcome: Outcome): OutcomeJSON {
  if (outcome === null || typeof outcome !== "object") throw new TypeError(`report(): an outcome is an object, not ${kindOf(outcome)}`);
  const out: OutcomeJSON = {};
  let config: ResolvedAgentConfig | null = null;
  for (const name in outcome) {
    const value = (outcome as Record<string, unknown>)[name];
    if (name === "config") {
      config = (value as ResolvedAgentConfig | null | undefined) ?? null;
      continue;
    }
    if (!COUNTS.has(name) && !NUMBERS.has(name) && !STRINGS.has(name) && name !== "success") {
      throw new TypeError(`report() got an unknown outcome field: ${name} (known: config, ${FIELDS.join(", ")})`);
    }
    if (value !== null && value !== undefined) out[name] = checked(name, value);
  }
  if (config !== null) {
    if (!("variant_id" in out)) out["variant_id"] = config.variant_id;
    if (config.experiment_id !== null && !("experiment_id" in out)) out["experiment_id"] = config.experiment_id;
    if (config.environment !== null && !("environment" in out)) out["environment"] = config.environment;
  }
  if (!("variant_id" in out)) out["variant_id"] = null; // the base config served it
  return out;
}

/** What became of the outcomes given to `report()` so far. */
export interface ReportStats {
  /** Stored by the service. */
  sent: number;
  /** Buffered or in flight. */
  pending: number;
  /** Refused because the buffer was full, or left unsent at close. */
  dropped: number;
  /** Refused by the service (invalid, or for an unknown agent). */
  rejected: number;
}

/** A bounded buffer of (agent, outcome) that drops (and counts) when full. */
export class OutcomeBuffer {
  readonly capacity: number;
  // A queue as an array and a head index: shift() would copy on every take.
  private agents: string[] = [];
  private items: OutcomeJSON[] = [];
  sent = 0;
  rejected = 0;
  dropped = 0;
  inFlight = 0;
  closed = false;
  /** Called when a full batch is waiting: wakes the sender. */
  onFull: (() => void) | null = null;

  constructor(capacity: number = CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`bufferCapacity must be a positive integer, not ${capacity}`);
    this.capacity = capacity;
  }

  get size(): number {
    return this.items.length;
  }

  /** Buffer one outcome; false when it was dropped (the buffer is full). */
  add(agent: string, outcome: OutcomeJSON): boolean {
    if (this.closed) throw new Error("report() on a closed client");
    if (this.items.length >= this.capacity) {
      this.dropped++;
      return false;
    }
    this.agents.push(agent);
    this.items.push(outcome);
    if (this.items.length % BATCH === 0) this.onFull?.();
    return true;
  }

  /** Everything buffered, grouped by agent; it counts as pending until `settle` says what became of it. */
  take(): Map<string, OutcomeJSON[]> {
    const byAgent = new Map<string, OutcomeJSON[]>();
    const { agents, items } = this;
    this.agents = [];
    this.items = [];
    this.inFlight += items.length;
    for (let i = 0; i < items.length; i++) {
      const agent = agents[i]!;
      let list = byAgent.get(agent);
      if (list === undefined) byAgent.set(agent, (list = []));
      list.push(items[i]!);
    }
    return byAgent;
  }

  settle(counts: { sent?: number; rejected?: number; dropped?: number }): void {
    const sent = counts.sent ?? 0;
    const rejected = counts.rejected ?? 0;
    const dropped = counts.dropped ?? 0;
    this.sent += sent;
    this.rejected += rejected;
    this.dropped += dropped;
    this.inFlight -= sent + rejected + dropped;
  }

  stats(): ReportStats {
    return { sent: this.sent, pending: this.items.length + this.inFlight, dropped: this.dropped, rejected: this.rejected };
  }
}

/** Up to 1,000 outcomes of one agent, and the idempotency key every attempt sends. */
interface Batch {
  agent: string;
  items: OutcomeJSON[];
  key: string;
}

/** A wait that never keeps the process alive by itself, ended early by `signal`. */
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

/** Drains an `OutcomeBuffer` into `POST .../outcomes` batches. */
export class Sender {
  private readonly conn: Connection;
  private readonly buffer: OutcomeBuffer;
  private readonly log: Logger;
  private readonly controller = new AbortController();
  private readonly batches: Batch[] = [];
  // One drain at a time: a flush() also waits for the one under way, then sends what came since.
  private tail: Promise<void> = Promise.resolve();
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;

  constructor(conn: Connection, buffer: OutcomeBuffer, log: Logger) {
    this.conn = conn;
    this.buffer = buffer;
    this.log = log;
    buffer.onFull = () => this.wake?.();
  }

  start(): void {
    if (this.loop === null) this.loop = this.run();
  }

  private async run(): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, EVERY_MS);
        timer.unref?.();
        function done(): void {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          resolve();
        }
        this.wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
      this.wake = null;
      if (signal.aborted) return;
      if (this.buffer.size === 0 && this.batches.length === 0) continue;
      try {
        await this.flush();
      } catch (error) {
        // A bug must not end reporting for the life of the process.
        this.log.warn(`agent-variants: sending outcomes failed (${String(error)}); retrying`);
        await pause(RETRY_MAX_MS, signal);
      }
    }
  }

  /** Send everything reported so far, each batch until it is stored or refused for good. */
  flush(): Promise<void> {
    const next = this.tail.then(() => this.drain());
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async drain(): Promise<void> {
    for (const [agent, outcomes] of this.buffer.take()) {
      for (let i = 0; i < outcomes.length; i += BATCH) {
        this.batches.push({ agent, items: outcomes.slice(i, i + BATCH), key: newIdempotencyKey() });
      }
    }
    while (this.batches.length && !this.controller.signal.aborted) {
      await this.deliver(this.batches[0]!);
      // Aborted mid-batch (close's deadline): it stays in line, counted by close.
      if (this.controller.signal.aborted) return;
      this.batches.shift();
    }
  }

  /**
   * Send what is left (for up to `timeoutMs`); what is still unsent then is counted as
   * dropped (a batch cut off mid-flight may have been stored all the same).
   */
  async close(timeoutMs: number): Promise<void> {
    this.buffer.closed = true;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([this.flush(), deadline]);
    } finally {
      clearTimeout(timer);
    }
    this.controller.abort(); // ends the loop, and the batch in flight if the deadline passed
    await Promise.allSettled([this.tail, this.loop]);
    this.buffer.take(); // anything reported meanwhile joins what is pending
    const unsent = this.buffer.stats().pending;
    if (unsent) {
      this.log.warn(`agent-variants: ${unsent} outcome(s) still unsent after ${timeoutMs / 1000} s at close were dropped`);
      this.buffer.settle({ dropped: unsent });
    }
    this.batches.length = 0;
  }

  /**
   * One batch, retried with its key until stored; items the service names as invalid (or as
   * naming an unknown experiment) are taken out (and counted), the rest sent under a new key.
   * An outage is waited out; a refusal no retry will change is counted as rejected, so one
   * bad batch never holds up the others.
   */
  private async deliver(batch: Batch): Promise<void> {
    const signal = this.controller.signal;
    let delay = RETRY_FIRST_MS;
    let attempts = 0;
    while (batch.items.length) {
      attempts++;
      const call = new Call("POST", `/v1/agents/${segment(batch.agent)}/outcomes`, {
        body: { data: batch.items },
        idempotencyKey: batch.key,
      });
      try {
        await send(this.conn, call, signal);
      } catch (error) {
        if (signal.aborted) return;
        if (!(error instanceof AgentVariantsError)) {
          // Cannot even be sent (a bug): refuse it rather than retry it forever.
          this.reject(batch, batch.items.length, new Unavailable(String(error), { cause: error }));
          return;
        }
        if (environmentRefused(error) && batch.items.some((item) => "environment" in item)) {
          // A service older than contract 1.1 takes no `environment`: send the outcomes
          // without it (they still count), under a new key (a new body).
          batch.items = batch.items.map(({ environment: _, ...rest }) => rest);
          batch.key = newIdempotencyKey();
          continue;
        }
        const named = namedItems(error, batch.items.length);
        if (named.size) {
          this.reject(batch, named.size, error);
          batch.items = batch.items.filter((_, i) => !named.has(i));
          batch.key = newIdempotencyKey(); // another body needs another key
          continue;
        }
        const wait = retryIn(error, attempts, delay);
        if (wait === null) {
          this.reject(batch, batch.items.length, error);
          return;
        }
        await pause(wait, signal);
        if (signal.aborted) return;
        delay = Math.min(delay * 2, RETRY_MAX_MS);
        continue;
      }
      this.buffer.settle({ sent: batch.items.length });
      return;
    }
  }

  /** Count `count` outcomes as refused for good, and say why. */
  private reject(batch: Batch, count: number, error: AgentVariantsError): void {
    const named = error.errors.length ? " " + JSON.stringify(error.errors) : "";
    this.log.warn(`agent-variants: the service refused ${count} outcome(s) of '${batch.agent}': ${error.message}${named}`);
    this.buffer.settle({ rejected: count });
  }
}

/** The batch items a 422 or 404 names (`data[3].input_tokens`): the ones to take out. */
export function namedItems(error: AgentVariantsError, size: number): Set<number> {
  const named = new Set<number>();
  if (!(error instanceof ValidationFailed) && !(error instanceof NotFound)) return named;
  for (const e of error.errors) {
    const match = ITEM.exec(String(e.param ?? ""));
    if (match) {
      const i = Number(match[1]);
      if (i < size) named.add(i);
    }
  }
  return named;
}

// What a service says of a field it does not take: its own words, or pydantic's.
const UNKNOWN_FIELD = ["unknown field", "extra inputs are not permitted"];

/**
 * Whether a 422 names nothing but outcomes' `environment` as a field it does not know: what
 * a service that predates environments says. A service that knows the field names it too
 * when the environment does not exist; those items are refused like any invalid one.
 */
export function environmentRefused(error: AgentVariantsError): boolean {
  if (!(error instanceof ValidationFailed)) return false;
  const named = error.errors;
  return (
    named.length > 0 &&
    named.every((e) => {
      const param = String(e.param ?? "");
      const message = String(e.message ?? "").toLowerCase();
      return ITEM.test(param) && param.endsWith("].environment") && UNKNOWN_FIELD.some((start) => message.startsWith(start));
    })
  );
}

/** Milliseconds to wait before sending a batch again, or null: it will never pass. */
export function retryIn(error: AgentVariantsError, attempts: number, delayMs: number): number | null {
  const pauseMs = delayMs * (0.5 + Math.random());
  if (error instanceof RateLimited) return Math.max((error.retryAfter ?? 0) * 1000, pauseMs);
  const status = error.status;
  if (status === null || status === 408 || status === 502 || status === 503 || status === 504) return pauseMs; // away: wait it out
  if (status === 409 && error.code === "idempotency_key_in_use") return pauseMs; // our own earlier attempt still runs
  if (error instanceof NotFound && error.code !== "resource_missing") return pauseMs; // a proxy's 404 during a deploy
  if (status >= 500 && attempts < SERVER_ERROR_ATTEMPTS) return pauseMs;
  return null; // a revoked key, an unknown agent, a server bug that persists: refused for good
}
