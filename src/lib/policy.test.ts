import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDuration } from "./durations.js";
import { policyFromAnnotations } from "./policy.js";

test("durations", () => {
  assert.equal(parseDuration("1500"), 1500);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("2s"), 2000);
  assert.equal(parseDuration("1.5m"), 90_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("7d"), 604_800_000);
  assert.equal(parseDuration("soon"), undefined);
  assert.equal(parseDuration("5x"), undefined);
  assert.equal(parseDuration("5s garbage"), undefined);
});

test("annotations become a policy", () => {
  const { policy, problems } = policyFromAnnotations({
    "async.knative.dev/max-attempts": "3",
    "async.knative.dev/min-backoff": "500ms",
    "async.knative.dev/max-age": "1h",
    "async.knative.dev/mode": "always.async.knative.dev",
  });
  assert.deepEqual(problems, []);
  assert.deepEqual(policy, { maxAttempts: 3, minBackoffMs: 500, maxAgeMs: 3_600_000 });
});

test("bad annotations are reported, not guessed", () => {
  const { policy, problems } = policyFromAnnotations({
    "async.knative.dev/max-attempts": "0",
    "async.knative.dev/timeout": "forever",
  });
  assert.deepEqual(policy, {});
  assert.deepEqual(
    problems.map((p) => p.name),
    ["async.knative.dev/max-attempts", "async.knative.dev/timeout"],
  );
});
