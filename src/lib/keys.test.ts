import assert from "node:assert/strict";
import { test } from "node:test";
import { hasHashTag, streamKeys } from "./keys.js";

test("derived keys share the stream's cluster slot through a hash tag", () => {
  const keys = streamKeys("mystream");
  assert.equal(keys.stream, "mystream");
  assert.equal(keys.deadLetter, "{mystream}:dlq");
  assert.equal(keys.retrySchedule, "{mystream}:retry:schedule");
  assert.equal(keys.idempotency("abc"), "{mystream}:idem:abc");
  assert.equal(keys.status("r1"), "{mystream}:status:r1");
  assert.equal(keys.services, "{mystream}:services");
  assert.equal(keys.servicesChanged, "{mystream}:services:changed");
});

test("a stream name with its own hash tag is used as the prefix unchanged", () => {
  assert.equal(hasHashTag("a{tag}b"), true);
  assert.equal(hasHashTag("a{}b"), false);
  assert.equal(hasHashTag("plain"), false);
  assert.equal(streamKeys("a{tag}b").deadLetter, "a{tag}b:dlq");
});
