import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ErrorCode } from "../lib/errors.js";
import type { DeliveryOutcome } from "../lib/outcome.js";
import type { RetrySettings } from "./config.js";
import { type AttemptFacts, backoffDelay, decide, effectivePolicy, isExpired } from "./decide.js";

const settings: RetrySettings = {
  maxAttempts: 5,
  minBackoffMs: 1000,
  maxBackoffMs: 60_000,
  maxAgeMs: 3_600_000,
  retryableStatuses: [408, 429, 500, 502, 503, 504],
  retryNonIdempotent: false,
  timeoutMs: 30_000,
  maxTimeoutMs: 60_000,
};
const policy = effectivePolicy(settings);
const now = 1_700_000_000_000;

function facts(outcome: DeliveryOutcome, more: Partial<AttemptFacts> = {}): AttemptFacts {
  return {
    outcome,
    attempt: 1,
    method: "GET",
    hasIdempotencyKey: false,
    acceptedAt: now,
    firstAttemptAt: now,
    now,
    ...more,
  };
}
const status = (s: number, retryAfterMs?: number): DeliveryOutcome =>
  retryAfterMs === undefined
    ? { kind: "response", status: s, durationMs: 1 }
    : { kind: "response", status: s, retryAfterMs, durationMs: 1 };
const error = (code: ErrorCode): DeliveryOutcome => ({ kind: "error", code, message: "x", durationMs: 1 });
const half = () => 0.5;

describe("decide", () => {
  const rows: { name: string; facts: AttemptFacts; want: ReturnType<typeof decide> }[] = [
    { name: "2xx is delivered", facts: facts(status(200)), want: { action: "ack" } },
    {
      name: "3xx is delivered (redirects are not followed)",
      facts: facts(status(302)),
      want: { action: "ack" },
    },
    { name: "404 is final", facts: facts(status(404)), want: { action: "dead-letter", reason: "rejected" } },
    { name: "400 is final", facts: facts(status(400)), want: { action: "dead-letter", reason: "rejected" } },
    { name: "500 on GET is retried", facts: facts(status(500)), want: { action: "retry", delayMs: 1000 } },
    {
      name: "Retry-After is honoured",
      facts: facts(status(503, 7000)),
      want: { action: "retry", delayMs: 7000 },
    },
    {
      name: "an unreachable target is retried for POST too",
      facts: facts(error(ErrorCode.TargetUnreachable), { method: "POST" }),
      want: { action: "retry", delayMs: 1000 },
    },
    {
      name: "a consumer that refused our signature is retried for POST too: the app never saw it",
      facts: facts(error(ErrorCode.Unauthenticated), { method: "POST" }),
      want: { action: "retry", delayMs: 1000 },
    },
    {
      name: "a forbidden target is dead-lettered at once, never retried",
      facts: facts(error(ErrorCode.ForbiddenTarget)),
      want: { action: "dead-letter", reason: "forbidden-target" },
    },
    {
      name: "429 on POST is retried: the app refused before processing",
      facts: facts(status(429), { method: "POST" }),
      want: { action: "retry", delayMs: 1000 },
    },
    {
      name: "500 on POST without Idempotency-Key is not retried",
      facts: facts(status(500), { method: "POST" }),
      want: { action: "dead-letter", reason: "unsafe-retry" },
    },
    {
      name: "a timeout on PATCH without Idempotency-Key is not retried",
      facts: facts(error(ErrorCode.TargetTimeout), { method: "PATCH" }),
      want: { action: "dead-letter", reason: "unsafe-retry" },
    },
    {
      name: "500 on POST with Idempotency-Key is retried",
      facts: facts(status(500), { method: "POST", hasIdempotencyKey: true }),
      want: { action: "retry", delayMs: 1000 },
    },
    {
      name: "a timeout on PUT is retried (idempotent)",
      facts: facts(error(ErrorCode.TargetTimeout), { method: "PUT" }),
      want: { action: "retry", delayMs: 1000 },
    },
    {
      name: "a malformed entry is dead-lettered at once",
      facts: facts(error(ErrorCode.MalformedEvent)),
      want: { action: "dead-letter", reason: "malformed" },
    },
    {
      name: "the last attempt dead-letters",
      facts: facts(status(503), { attempt: 5 }),
      want: { action: "dead-letter", reason: "max-attempts" },
    },
    {
      name: "a retry that would fall past the max age dead-letters",
      facts: facts(status(503, 10_000), { acceptedAt: now - 3_595_000 }),
      want: { action: "dead-letter", reason: "max-age" },
    },
    {
      name: "entries of the original producer age from their first attempt",
      facts: facts(status(503, 10_000), { acceptedAt: undefined, firstAttemptAt: now - 3_595_000 }),
      want: { action: "dead-letter", reason: "max-age" },
    },
  ];
  for (const row of rows) {
    test(row.name, () => assert.deepEqual(decide(row.facts, policy, settings, half), row.want));
  }

  test("RETRY_NON_IDEMPOTENT lets POST be retried after a 500", () => {
    assert.deepEqual(
      decide(facts(status(500), { method: "POST" }), policy, { ...settings, retryNonIdempotent: true }, half),
      {
        action: "retry",
        delayMs: 1000,
      },
    );
  });

  test("the retryable set is configurable", () => {
    assert.deepEqual(decide(facts(status(409)), policy, { ...settings, retryableStatuses: [409] }, half), {
      action: "retry",
      delayMs: 1000,
    });
    assert.deepEqual(decide(facts(status(500)), policy, { ...settings, retryableStatuses: [] }, half), {
      action: "dead-letter",
      reason: "rejected",
    });
  });
});

describe("backoff", () => {
  test("doubles from the minimum up to the maximum, with jitter within [half, all]", () => {
    const p = effectivePolicy({ ...settings, minBackoffMs: 1000, maxBackoffMs: 10_000 });
    assert.equal(
      backoffDelay(1, p, () => 1),
      1000,
    );
    assert.equal(
      backoffDelay(2, p, () => 1),
      2000,
    );
    assert.equal(
      backoffDelay(3, p, () => 1),
      4000,
    );
    assert.equal(
      backoffDelay(5, p, () => 1),
      10_000,
    );
    assert.equal(
      backoffDelay(50, p, () => 1),
      10_000,
    );
    assert.equal(
      backoffDelay(4, p, () => 0),
      4000,
    );
    assert.equal(
      backoffDelay(1, p, () => 0),
      1000,
      "never below the minimum",
    );
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(4, p);
      assert.ok(d >= 4000 && d <= 8000, String(d));
    }
  });
});

describe("effective policy", () => {
  test("overrides apply within the ceilings and the operator's max timeout", () => {
    const p = effectivePolicy(settings, {
      maxAttempts: 3,
      minBackoffMs: 200,
      timeoutMs: 999_999_999,
      maxAttempts2: 1,
    } as never);
    assert.equal(p.maxAttempts, 3);
    assert.equal(p.minBackoffMs, 200);
    assert.equal(p.timeoutMs, settings.maxTimeoutMs);
    assert.equal(effectivePolicy(settings, { maxAttempts: 1e9 }).maxAttempts, 1000);
  });
  test("a min backoff above the max raises the max", () => {
    const p = effectivePolicy(settings, { minBackoffMs: 120_000 });
    assert.equal(p.maxBackoffMs, 120_000);
  });
  test("expiry", () => {
    assert.equal(isExpired(now - 3_600_001, now, policy), true);
    assert.equal(isExpired(now - 10, now, policy), false);
    assert.equal(isExpired(undefined, now, policy), false);
  });
});
