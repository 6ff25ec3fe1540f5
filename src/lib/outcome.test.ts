import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode } from "./errors.js";
import { type DeliveryOutcome, outcomeFromHttp, outcomeToHttp, parseRetryAfter } from "./outcome.js";

function roundTrip(outcome: DeliveryOutcome): DeliveryOutcome {
  const http = outcomeToHttp(outcome);
  return outcomeFromHttp(http.status, http.headers, outcome.durationMs);
}

test("a final target status travels as 200 with the target's status", () => {
  const http = outcomeToHttp({ kind: "response", status: 404, durationMs: 12 });
  assert.equal(http.status, 200);
  assert.equal(http.headers["async-target-status"], "404");
  assert.deepEqual(roundTrip({ kind: "response", status: 404, durationMs: 12 }), {
    kind: "response",
    status: 404,
    durationMs: 12,
  });
});

test("a retryable target status travels as 502 with Retry-After", () => {
  const outcome: DeliveryOutcome = { kind: "response", status: 503, retryAfterMs: 2000, durationMs: 3 };
  const http = outcomeToHttp(outcome);
  assert.equal(http.status, 502);
  assert.equal(http.headers["retry-after"], "2");
  assert.deepEqual(roundTrip(outcome), outcome);
});

test("errors travel by code", () => {
  for (const code of [ErrorCode.TargetUnreachable, ErrorCode.TargetTimeout, ErrorCode.MalformedEvent]) {
    const back = roundTrip({ kind: "error", code, message: "x", durationMs: 1 });
    assert.equal(back.kind, "error");
    assert.equal(back.kind === "error" && back.code, code);
  }
  assert.equal(
    outcomeToHttp({ kind: "error", code: ErrorCode.MalformedEvent, message: "x", durationMs: 1 }).status,
    400,
  );
});

test("another sink's plain status is the outcome", () => {
  assert.deepEqual(outcomeFromHttp(202, {}, 5), { kind: "response", status: 202, durationMs: 5 });
  assert.deepEqual(outcomeFromHttp(500, {}, 5), { kind: "response", status: 500, durationMs: 5 });
});

test("Retry-After accepts seconds and HTTP dates", () => {
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter(undefined), undefined);
  assert.equal(parseRetryAfter("soon"), undefined);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now), 5000);
});
