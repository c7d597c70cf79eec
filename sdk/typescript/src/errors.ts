/**
 * Typed errors from the service's problem+json answers, mirroring the Python SDK's
 * (`agent_variants.errors`). Each keeps the whole document in `problem`; `code` is its `code`.
 */

/** A problem+json body (RFC 9457) as the service writes it. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  errors?: ProblemError[];
  [extra: string]: unknown;
}

/** One bad field of a 422: `param` names it (`variables.tone`, `data[3].input_tokens`). */
export interface ProblemError {
  param: string;
  message: string;
  [extra: string]: unknown;
}

/** Base of every error the SDK raises. */
export class AgentVariantsError extends Error {
  override name = "AgentVariantsError";
  readonly status: number | null;
  readonly problem: Problem;
  readonly code: string | null;

  constructor(message: string, options: { status?: number | null; problem?: Problem | null; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status ?? null;
    this.problem = options.problem ?? {};
    this.code = typeof this.problem.code === "string" ? this.problem.code : null;
  }

  /** Every bad field the service named (empty unless it named some). */
  get errors(): ProblemError[] {
    return Array.isArray(this.problem.errors) ? [...this.problem.errors] : [];
  }
}

export class NotFound extends AgentVariantsError {
  override name = "NotFound";
}

export class Conflict extends AgentVariantsError {
  override name = "Conflict";
}

export class ValidationFailed extends AgentVariantsError {
  override name = "ValidationFailed";
}

export class PreconditionFailed extends AgentVariantsError {
  override name = "PreconditionFailed";
}

export class Unauthorized extends AgentVariantsError {
  override name = "Unauthorized";
}

export class Forbidden extends AgentVariantsError {
  override name = "Forbidden";
}

export class RateLimited extends AgentVariantsError {
  override name = "RateLimited";
  /** Seconds the service asked to wait (`Retry-After`), when it said. */
  readonly retryAfter: number | null;

  constructor(
    message: string,
    options: { status?: number | null; problem?: Problem | null; retryAfter?: number | null; cause?: unknown } = {},
  ) {
    super(message, options);
    this.retryAfter = options.retryAfter ?? null;
  }
}

/** The service cannot be reached (or answered 503), and nothing fresh enough is held. */
export class Unavailable extends AgentVariantsError {
  override name = "Unavailable";
}

/**
 * `config.render()` refused the variables (or the config's templates), as the service's
 * `POST .../render` refuses them: `code` is `missing_variable`, `unknown_variable` or
 * `validation_error` (or `invalid_template`, `undeclared_variable` for a config the service
 * would not serve), `errors` names each one, and `status` is 422. Catching
 * `ValidationFailed` handles a local render and a remote one alike.
 */
export class RenderFailed extends ValidationFailed {
  override name = "RenderFailed";
}

/**
 * The resolved config cannot be written as this provider's request (a temperature past its
 * range, a param naming a key the config's own fields set). `errors` names each problem.
 */
export class IncompatibleConfig extends AgentVariantsError {
  override name = "IncompatibleConfig";
  readonly provider: string;

  constructor(provider: string, errors: ProblemError[]) {
    const message =
      `the config does not fit ${provider}'s request: ` + errors.map((e) => `${e.param}: ${e.message}`).join("; ");
    super(message, { problem: { code: "incompatible_config", detail: message, errors } });
    this.provider = provider;
  }
}

const BY_STATUS: Record<number, typeof AgentVariantsError> = {
  401: Unauthorized,
  403: Forbidden,
  404: NotFound,
  409: Conflict,
  412: PreconditionFailed,
  422: ValidationFailed,
  503: Unavailable,
};

/** The error for a 4xx/5xx answer (`body` its parsed JSON, if any). */
export function fromResponse(status: number, body: unknown, headers: Headers): AgentVariantsError {
  const problem: Problem = body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Problem) : {};
  const message = typeof problem.detail === "string" && problem.detail ? problem.detail : `HTTP ${status}`;
  if (status === 429) {
    return new RateLimited(message, { status, problem, retryAfter: secondsUntil(headers.get("retry-after")) });
  }
  const Kind = BY_STATUS[status] ?? (status >= 500 ? Unavailable : AgentVariantsError);
  return new Kind(message, { status, problem });
}

/** A `Retry-After` value in seconds: a number, or an HTTP date (RFC 9110); null if unreadable. */
export function secondsUntil(value: string | null): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.max(0, Number(text));
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, (when - Date.now()) / 1000);
}
