import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { readHeaders } from "./request-headers.js";

describe("readHeaders", () => {
  test("merges names case-insensitively under their canonical spelling, values in order", () => {
    const headers = readHeaders(["x-tag", "a", "Content-Type", "text/plain", "X-TAG", "b"]);
    assert.deepEqual(headers.stored, { "X-Tag": ["a", "b"], "Content-Type": ["text/plain"] });
  });

  test("picks out the headers the producer acts on", () => {
    const headers = readHeaders([
      "async-original-host",
      "app.default",
      "IDEMPOTENCY-KEY",
      '"k1"',
      "Prefer",
      "respond-async",
      "prefer",
      "wait=5",
    ]);
    assert.deepEqual(headers.originalHost, ["app.default"]);
    assert.deepEqual(headers.idempotencyKey, ['"k1"']);
    assert.deepEqual(headers.prefer, ["respond-async", "wait=5"]);
  });

  test("a client-sent delivery policy is dropped: neither stored nor passed on", () => {
    const headers = readHeaders([
      "Async-Delivery-Policy",
      "max-attempts=1000",
      "x-tag",
      "a",
      "async-delivery-policy",
      "max-age=30d",
    ]);
    assert.deepEqual(headers, {
      stored: { "X-Tag": ["a"] },
      originalHost: undefined,
      idempotencyKey: undefined,
      prefer: undefined,
    });
  });
});
