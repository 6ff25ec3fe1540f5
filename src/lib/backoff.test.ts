import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff, backoffDelay } from "./backoff.js";

test("doubles from the base up to the cap", () => {
  const options = { baseMs: 100, maxMs: 1000 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, options)),
    [100, 200, 400, 800, 1000, 1000],
  );
  assert.equal(backoffDelay(0, options), 100, "attempt 0 is read as the first");
  assert.equal(backoffDelay(10_000, options), 1000, "no overflow for huge attempts");
});

test("equal jitter stays between half and all of the step, never below the base", () => {
  const options = { baseMs: 1000, maxMs: 60_000, jitter: "equal" as const };
  assert.equal(
    backoffDelay(1, options, () => 0),
    1000,
  );
  assert.equal(
    backoffDelay(3, options, () => 0),
    2000,
  );
  assert.equal(
    backoffDelay(3, options, () => 0.999999),
    4000,
  );
  assert.equal(
    backoffDelay(20, options, () => 0),
    30_000,
  );
});

test("a loop's backoff grows with failures and starts over after a reset", () => {
  const backoff = new Backoff({ baseMs: 50, maxMs: 1000 });
  assert.deepEqual([backoff.next(), backoff.next(), backoff.next()], [50, 100, 200]);
  assert.equal(backoff.failures, 3);
  backoff.reset();
  assert.equal(backoff.next(), 50);
});
