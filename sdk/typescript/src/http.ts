/**
 * One HTTP exchange with the service: the request, when to retry it, and what it means
 * (the Python SDK's `_http.py`, with `fetch`). A request is retried only when a retry cannot
 * do anything twice:
 *
 * - a connection that was never made (nothing reached the service): any request;
 * - a 429 (the service did nothing): any request, after its `Retry-After`;
 * - a lost answer or 502/503/504: `GET`; `POST`, which always carries an `Idempotency-Key`,
 *   so the service answers a retry with the first response; and a `PATCH` without `If-Match`
 *   (a merge patch applied twice leaves the same state);
 * - 409 `idempotency_key_in_use`: the first attempt is still running; wait for it.
 *
 * `DELETE` and conditional `PATCH` are not retried after they may have reached the service:
 * a second attempt would answer 404 or 412 for a change that did happen.
 */

import { randomBytes } from "node:crypto";

import { AgentVariantsError, Unavailable, fromResponse, secondsUntil } from "./errors.js";
import { VERSION } from "./version.js";

export const ATTEMPTS = 4;
const FIRST_DELAY = 0.2;
/** The longest `Retry-After` worth waiting for inside one call; longer, the caller decides. */
const MAX_RETRY_AFTER = 10;

export type Method = "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
export type Query = Record<string, string | number | boolean | null | undefined>;

/** An `If-Match` value: a version number becomes its strong ETag; `*` and quoted tags pass. */
export type ETag = number | string;

export function newIdempotencyKey(): string {
  return "sdk-" + randomBytes(24).toString("base64url");
}

/** An id or slug as one path segment (a stray `/` must not move the path). */
export function segment(ref: string): string {
  return encodeURIComponent(ref);
}

export function etag(value: ETag): string {
  if (typeof value === "number") return `"${value}"`;
  return value === "*" || value.startsWith('"') || value.startsWith('W/"') ? value : `"${value}"`;
}

/** One request, as sent on every attempt (the idempotency key included). */
export class Call {
  readonly method: Method;
  readonly path: string;
  readonly body: unknown;
  readonly query: Record<string, string>;
  readonly headers: Record<string, string>;

  constructor(
    method: Method,
    path: string,
    options: { body?: unknown; query?: Query; ifMatch?: ETag | null; idempotencyKey?: string | null } = {},
  ) {
    this.method = method;
    this.path = path;
    this.body = options.body;
    this.headers = {};
    if (method === "POST") this.headers["Idempotency-Key"] = options.idempotencyKey ?? newIdempotencyKey();
    if (options.ifMatch !== undefined && options.ifMatch !== null) this.headers["If-Match"] = etag(options.ifMatch);
    this.query = {};
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== null && value !== undefined) this.query[name] = String(value);
    }
  }

  /** Whether sending it again after it may have reached the service is harmless. */
  get replayable(): boolean {
    return this.method === "GET" || this.method === "POST" || (this.method === "PATCH" && !("If-Match" in this.headers));
  }
}

/** How the client talks to the service: its base URL, key, and per-request timeout. */
export interface Connection {
  baseUrl: string;
  headers: Record<string, string>;
  /** Milliseconds for one attempt (connect to the last byte); null: no limit. */
  timeoutMs: number | null;
  /** `fetch` (the global one unless a test or a runtime hands another). */
  fetch: typeof fetch;
}

export function connection(options: {
  baseUrl: string;
  apiKey?: string | null;
  timeoutMs?: number | null;
  fetch?: typeof fetch;
}): Connection {
  const headers: Record<string, string> = { "User-Agent": `agent-variants-sdk-js/${VERSION}` };
  if (options.apiKey) headers["Authorization"] = `Bearer ${options.apiKey}`;
  return {
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    headers,
    timeoutMs: options.timeoutMs === undefined ? 5000 : options.timeoutMs,
    fetch: options.fetch ?? globalThis.fetch.bind(globalThis),
  };
}

/** The absolute URL of `path` with `query`. */
export function url(conn: Connection, path: string, query?: Record<string, string>): string {
  const search = query && Object.keys(query).length ? "?" + new URLSearchParams(query).toString() : "";
  return conn.baseUrl + path + search;
}

/** Whether a `fetch` failure happened before anything reached the service. */
export function neverSent(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string } } | null)?.cause;
  const code = cause?.code ?? (error as { code?: string } | null)?.code;
  return (
    code === "ECONNREFUSED" ||
    code === "ENOTFOUND" ||
    code === "EAI_AGAIN" ||
    code === "UND_ERR_CONNECT_TIMEOUT" ||
    code === "EHOSTUNREACH" ||
    code === "ENETUNREACH"
  );
}

function backoff(attempt: number): number {
  return FIRST_DELAY * 2 ** (attempt - 1) * (0.5 + Math.random());
}

/** Seconds to wait before attempt `attempt + 1`, or null: this attempt's result stands. */
export function waitBeforeRetry(
  call: Call,
  attempt: number,
  response: { status: number; headers: Headers; code: string | null } | null,
  error: unknown,
): number | null {
  if (attempt >= ATTEMPTS) return null;
  if (response === null) return neverSent(error) || call.replayable ? backoff(attempt) : null;
  const status = response.status;
  if (status === 409 && call.method === "POST" && response.code === "idempotency_key_in_use") return backoff(attempt);
  // A 429 was not processed at all: any request may go again. A 5xx may have been.
  if (status === 429 || ((status === 502 || status === 503 || status === 504) && call.replayable)) {
    const after = secondsUntil(response.headers.get("retry-after"));
    if (after === null) return backoff(attempt);
    return after <= MAX_RETRY_AFTER ? after : null;
  }
  return null;
}

export function sleep(seconds: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, seconds * 1000);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** One attempt: the response and its parsed body (null when empty or not JSON). */
export async function attempt(
  conn: Connection,
  call: Call,
  extra: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<{ response: Response; body: unknown }> {
  const headers: Record<string, string> = { ...conn.headers, ...call.headers, ...extra.headers };
  let payload: string | undefined;
  if (call.body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(call.body);
  }
  const signals = [extra.signal, conn.timeoutMs === null ? undefined : AbortSignal.timeout(conn.timeoutMs)].filter(
    (s): s is AbortSignal => s !== undefined,
  );
  const init: RequestInit = { method: call.method, headers };
  if (payload !== undefined) init.body = payload;
  // The caller's signal lives as long as the client: the listener linking it to this
  // attempt must go with the attempt, or every request would leave one behind.
  const linked = signals.length > 1 ? linkSignals(signals) : null;
  if (signals.length) init.signal = linked !== null ? linked.signal : signals[0]!;
  let text: string;
  let response: Response;
  try {
    response = await conn.fetch(url(conn, call.path, call.query), init);
    text = await response.text();
  } finally {
    linked?.dispose();
  }
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  return { response, body };
}

/** A signal aborted when any of `signals` is, and `dispose` to unhook it from them. */
export function linkSignals(signals: AbortSignal[]): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const hooks: [AbortSignal, () => void][] = [];
  for (const signal of signals) {
    if (signal.aborted) {
      controller.abort(signal.reason);
      break;
    }
    const hook = (): void => controller.abort(signal.reason);
    signal.addEventListener("abort", hook, { once: true });
    hooks.push([signal, hook]);
  }
  return {
    signal: controller.signal,
    dispose: () => {
      for (const [signal, hook] of hooks) signal.removeEventListener("abort", hook);
    },
  };
}

/** `AbortSignal.any` (Node 20.3+), written out for Node 18. Its listeners stay on `signals`: for short-lived ones (`linkSignals` otherwise). */
export function anySignal(signals: AbortSignal[]): AbortSignal {
  const controller = new AbortController();
  for (const signal of signals) {
    if (signal.aborted) {
      controller.abort(signal.reason);
      break;
    }
    signal.addEventListener("abort", () => controller.abort(signal.reason), { once: true });
  }
  return controller.signal;
}

/** The body of a successful answer (null for 204/304), or the typed error. */
export function result(response: Response | null, body: unknown, error: unknown): unknown {
  if (response === null) {
    if (error instanceof AgentVariantsError) throw error;
    throw new Unavailable(`The service cannot be reached: ${String(error)}`, { cause: error });
  }
  if (response.status >= 400) throw fromResponse(response.status, body, response.headers);
  return response.status === 204 || response.status === 304 ? null : body;
}

/** Send `call`, retrying as the module says; its body, or the typed error. */
export async function send<T = unknown>(conn: Connection, call: Call, signal?: AbortSignal): Promise<T> {
  for (let n = 1; ; n++) {
    let response: Response | null = null;
    let body: unknown = null;
    let error: unknown = null;
    try {
      ({ response, body } = await attempt(conn, call, signal ? { signal } : {}));
    } catch (caught) {
      if (signal?.aborted) throw caught;
      error = caught;
    }
    const code = body !== null && typeof body === "object" ? ((body as { code?: unknown }).code ?? null) : null;
    const wait = waitBeforeRetry(
      call,
      n,
      response && { status: response.status, headers: response.headers, code: typeof code === "string" ? code : null },
      error,
    );
    if (wait === null) return result(response, body, error) as T;
    await sleep(wait, signal);
  }
}
