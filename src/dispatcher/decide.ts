/**
 * What to do after an attempt: acknowledge, retry later, or dead-letter. Pure, so every rule is tested
 * directly (decide.test.ts) and documented in one place (the README's "Delivery guarantees").
 *
 * The rules:
 * - The target answered 2xx or 3xx: delivered.
 * - It answered a status outside the retryable set (by default any 4xx but 408 and 429): final; the
 *   entry is dead-lettered with that status, so it can be inspected and replayed.
 * - A retryable failure is retried with exponential backoff and jitter (or after the target's
 *   Retry-After), until the attempts or the age run out; then it is dead-lettered.
 * - Methods that are not idempotent (POST, PATCH and unknown ones) are retried after a failure only
 *   when retrying cannot make the app do the work twice, or when the app receives the request's
 *   Idempotency-Key (not when the replay strips it as hop-by-hop), or when the operator allows it
 *   (RETRY_NON_IDEMPOTENT). Retrying cannot double the work when the request provably did not reach the app or was refused before processing:
 *   connection failures, 408, 429 and 503. After a 500, 502, 504, a timeout or a broken connection the
 *   app may have done the work, so such a request is dead-lettered instead of retried.
 */
import { backoffDelay as exponentialBackoff } from "../lib/backoff.js";
import type { DeliveryPolicyOverrides } from "../lib/envelope.js";
import { ErrorCode } from "../lib/errors.js";
import type { DeliveryOutcome } from "../lib/outcome.js";
import type { RetrySettings } from "./config.js";

export type DeadLetterReason =
  /** The entry cannot be decoded into a request. */
  | "malformed"
  /** The target rule (src/lib/target.ts) refuses the request's URL: it is never sent. */
  | "forbidden-target"
  /** The target answered with a final (non-retryable) error status. */
  | "rejected"
  /** A retryable failure, but retrying a non-idempotent request could make the app do it twice. */
  | "unsafe-retry"
  | "max-attempts"
  | "max-age";

export type Decision =
  | { readonly action: "ack" }
  | { readonly action: "retry"; readonly delayMs: number }
  | { readonly action: "dead-letter"; readonly reason: DeadLetterReason };

/** The policy for one request: the operator's settings with the request's overrides, within limits. */
export interface EffectivePolicy {
  readonly maxAttempts: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxAgeMs: number;
  readonly timeoutMs: number;
}

/** Hard ceilings for per-service overrides, so that one annotation cannot keep an entry forever. */
const POLICY_CEILINGS = Object.freeze({
  maxAttempts: 1000,
  backoffMs: 24 * 3_600_000,
  maxAgeMs: 30 * 24 * 3_600_000,
});

export function effectivePolicy(
  settings: RetrySettings,
  overrides?: DeliveryPolicyOverrides,
): EffectivePolicy {
  const o = overrides ?? {};
  const minBackoffMs = Math.min(o.minBackoffMs ?? settings.minBackoffMs, POLICY_CEILINGS.backoffMs);
  const maxBackoffMs = Math.max(
    minBackoffMs,
    Math.min(o.maxBackoffMs ?? settings.maxBackoffMs, POLICY_CEILINGS.backoffMs),
  );
  return {
    maxAttempts: Math.max(1, Math.min(o.maxAttempts ?? settings.maxAttempts, POLICY_CEILINGS.maxAttempts)),
    minBackoffMs,
    maxBackoffMs,
    maxAgeMs: Math.min(o.maxAgeMs ?? settings.maxAgeMs, POLICY_CEILINGS.maxAgeMs),
    timeoutMs: Math.max(1, Math.min(o.timeoutMs ?? settings.timeoutMs, settings.maxTimeoutMs)),
  };
}

const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** Statuses that say the request was refused before any processing. */
const NOT_PROCESSED_STATUSES: ReadonlySet<number> = new Set([408, 429, 503]);

export interface AttemptFacts {
  readonly outcome: DeliveryOutcome;
  /** This attempt's number, 1 for the first. */
  readonly attempt: number;
  readonly method: string;
  /**
   * The app receives an Idempotency-Key with the request (src/lib/replay.ts's appReceivesIdempotencyKey):
   * a key the replay strips, because the client named it in Connection, makes no retry safe.
   */
  readonly hasIdempotencyKey: boolean;
  /** When the producer accepted the request (ms); undefined for entries of the original producer. */
  readonly acceptedAt: number | undefined;
  /** When the entry was first tried (ms): the age of entries without acceptedAt counts from here. */
  readonly firstAttemptAt: number;
  readonly now: number;
}

export function decide(
  facts: AttemptFacts,
  policy: EffectivePolicy,
  settings: Pick<RetrySettings, "retryableStatuses" | "retryNonIdempotent">,
  random: () => number = Math.random,
): Decision {
  const { outcome } = facts;
  if (outcome.kind === "response") {
    if (outcome.status < 400) return { action: "ack" };
    if (!settings.retryableStatuses.includes(outcome.status))
      return { action: "dead-letter", reason: "rejected" };
  } else if (outcome.code === ErrorCode.MalformedEvent) {
    return { action: "dead-letter", reason: "malformed" };
  } else if (outcome.code === ErrorCode.ForbiddenTarget) {
    return { action: "dead-letter", reason: "forbidden-target" };
  }

  // A consumer that refused our signature (secrets out of step during a rotation) never replayed it.
  const neverProcessed =
    outcome.kind === "response"
      ? NOT_PROCESSED_STATUSES.has(outcome.status)
      : outcome.code === ErrorCode.TargetUnreachable || outcome.code === ErrorCode.Unauthenticated;
  const safeToRepeat =
    neverProcessed ||
    IDEMPOTENT_METHODS.has(facts.method.toUpperCase()) ||
    facts.hasIdempotencyKey ||
    settings.retryNonIdempotent;
  if (!safeToRepeat) return { action: "dead-letter", reason: "unsafe-retry" };
  if (facts.attempt >= policy.maxAttempts) return { action: "dead-letter", reason: "max-attempts" };

  const delayMs = outcome.retryAfterMs ?? backoffDelay(facts.attempt, policy, random);
  const bornAt = facts.acceptedAt ?? facts.firstAttemptAt;
  if (facts.now + delayMs > bornAt + policy.maxAgeMs) return { action: "dead-letter", reason: "max-age" };
  return { action: "retry", delayMs };
}

/**
 * The wait before retrying after attempt `attempt`: the one backoff (src/lib/backoff.ts) from the
 * policy's minimum to its maximum, with equal jitter, so that the retries of a burst that failed
 * together do not all hit a recovering service at once.
 */
export function backoffDelay(
  attempt: number,
  policy: EffectivePolicy,
  random: () => number = Math.random,
): number {
  return exponentialBackoff(
    attempt,
    { baseMs: policy.minBackoffMs, maxMs: policy.maxBackoffMs, jitter: "equal" },
    random,
  );
}

/** True when a request of this age is past its policy's maximum age. */
export function isExpired(acceptedAt: number | undefined, now: number, policy: EffectivePolicy): boolean {
  return acceptedAt !== undefined && now - acceptedAt > policy.maxAgeMs;
}
