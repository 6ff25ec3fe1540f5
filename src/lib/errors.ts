/**
 * Every error a component reports carries a stable `code` (like undici's `UND_ERR_*` or fastify's
 * `FST_ERR_*`). Codes are what metrics are labelled by and what clients can match on; messages are for
 * humans and may change. The HTTP status for each code is decided here and nowhere else.
 */

export const ErrorCode = {
  /** The request has no usable target (missing or malformed `Async-Original-Host`). */
  BadTarget: "ASYNC_ERR_BAD_TARGET",
  /** The target is not a cluster-local service (or is the producer itself): we are not an open proxy. */
  ForbiddenTarget: "ASYNC_ERR_FORBIDDEN_TARGET",
  /** The body is larger than REQUEST_SIZE_LIMIT. */
  BodyTooLarge: "ASYNC_ERR_BODY_TOO_LARGE",
  /** The client went away or sent a broken body before we could store it. */
  BodyAborted: "ASYNC_ERR_BODY_ABORTED",
  /**
   * The bytes after the declared body are not an HTTP request: the body's length is in doubt (a wrong
   * Content-Length), so the request is refused rather than stored cut short.
   */
  BadFraming: "ASYNC_ERR_BAD_FRAMING",
  /** More header fields, or more header bytes, than the producer takes: refused, never truncated. */
  HeadersTooLarge: "ASYNC_ERR_HEADERS_TOO_LARGE",
  /** Redis could not take the write (unreachable, or it refused it): the request was NOT stored. */
  StoreUnavailable: "ASYNC_ERR_STORE_UNAVAILABLE",
  /**
   * The write was sent but Redis did not confirm it (no answer in time, or the connection broke while it
   * was out): the request may have been stored and may still be delivered.
   */
  StoreUnconfirmed: "ASYNC_ERR_STORE_UNCONFIRMED",
  /** The producer holds as many request bodies as REQUEST_BYTES_IN_FLIGHT allows and none finished in time. */
  Overloaded: "ASYNC_ERR_OVERLOADED",
  /** An event reached the consumer without a valid signature of our dispatcher. */
  Unauthenticated: "ASYNC_ERR_UNAUTHENTICATED",
  /**
   * Redis stored the request on the primary but fewer replicas than required confirmed it in time: it
   * may still be delivered, so a client should retry with the same Idempotency-Key.
   */
  NotReplicated: "ASYNC_ERR_NOT_REPLICATED",
  /** A CloudEvent or stream entry that cannot be decoded into a request. Never retried. */
  MalformedEvent: "ASYNC_ERR_MALFORMED_EVENT",
  /** The same Idempotency-Key was used before with a different request. */
  IdempotencyMismatch: "ASYNC_ERR_IDEMPOTENCY_MISMATCH",
  /** A request with the same Idempotency-Key is still being accepted. */
  IdempotencyInProgress: "ASYNC_ERR_IDEMPOTENCY_IN_PROGRESS",
  /** The Idempotency-Key header is present but not a valid key. */
  BadIdempotencyKey: "ASYNC_ERR_BAD_IDEMPOTENCY_KEY",
  /** The replayed request could not reach the target (connection refused, reset, DNS). */
  TargetUnreachable: "ASYNC_ERR_TARGET_UNREACHABLE",
  /** The replayed request got no answer within the request timeout (the app may have received it). */
  TargetTimeout: "ASYNC_ERR_TARGET_TIMEOUT",
  /** The connection broke after the request was sent (the app may have received it). */
  TargetFailed: "ASYNC_ERR_TARGET_FAILED",
  /** Nothing is served at this path or with this method. */
  NotFound: "ASYNC_ERR_NOT_FOUND",
  MethodNotAllowed: "ASYNC_ERR_METHOD_NOT_ALLOWED",
  /** Configuration is invalid: reported once at start-up. */
  BadConfig: "ASYNC_ERR_BAD_CONFIG",
  /** A KIngress annotation (async mode or delivery policy) has a value the controller cannot use. */
  InvalidAnnotation: "ASYNC_ERR_INVALID_ANNOTATION",
  /** A Kubernetes API call made by the controller failed. */
  KubeApi: "ASYNC_ERR_KUBE_API",
  /** No byte of the request body came for BODY_IDLE_TIMEOUT: the request is cut, nothing stored. */
  BodyIdle: "ASYNC_ERR_BODY_IDLE",
  /**
   * The headers did not all come within HEADERS_TIMEOUT, or the whole request within
   * REQUEST_READ_TIMEOUT: the request is cut, nothing stored.
   */
  RequestTimeout: "ASYNC_ERR_REQUEST_TIMEOUT",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const statusByCode: Record<ErrorCode, number> = {
  [ErrorCode.BadTarget]: 400,
  [ErrorCode.ForbiddenTarget]: 403,
  [ErrorCode.BodyTooLarge]: 413,
  [ErrorCode.BodyAborted]: 400,
  [ErrorCode.BadFraming]: 400,
  [ErrorCode.HeadersTooLarge]: 431,
  [ErrorCode.StoreUnavailable]: 503,
  [ErrorCode.StoreUnconfirmed]: 503,
  [ErrorCode.Overloaded]: 503,
  [ErrorCode.Unauthenticated]: 401,
  [ErrorCode.NotReplicated]: 503,
  [ErrorCode.MalformedEvent]: 400,
  [ErrorCode.IdempotencyMismatch]: 422,
  [ErrorCode.IdempotencyInProgress]: 409,
  [ErrorCode.BadIdempotencyKey]: 400,
  [ErrorCode.TargetUnreachable]: 502,
  [ErrorCode.TargetTimeout]: 504,
  [ErrorCode.TargetFailed]: 502,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.MethodNotAllowed]: 405,
  [ErrorCode.BadConfig]: 500,
  [ErrorCode.InvalidAnnotation]: 400,
  [ErrorCode.KubeApi]: 502,
  [ErrorCode.BodyIdle]: 408,
  [ErrorCode.RequestTimeout]: 408,
};

export class AsyncError extends Error {
  readonly code: ErrorCode;
  /** Extra response headers that belong with this error (for example Retry-After on 503). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AsyncError";
    this.code = code;
    this.headers = options?.headers ?? {};
  }
}

/** The one place where error codes become HTTP statuses. Anything unknown is a 500. */
export function httpStatusOf(err: unknown): number {
  if (err instanceof AsyncError) return statusByCode[err.code];
  return 500;
}

export function errorCodeOf(err: unknown): string {
  if (err instanceof AsyncError) return err.code;
  return "ASYNC_ERR_INTERNAL";
}

/** The short JSON body every component answers errors with. */
export function errorBody(err: unknown): string {
  const message = err instanceof AsyncError ? err.message : "internal error";
  return JSON.stringify({ error: errorCodeOf(err), message });
}
