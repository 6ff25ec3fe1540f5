import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../lib/config.js";
import { loadDevEnv } from "./config.js";

test("defaults: its own Redis, the original stream name, quiet logs, fewer attempts", () => {
  assert.deepEqual(loadDevEnv({}), {
    streamName: "mystream",
    logLevel: "warn",
    dispatcherEnv: { MAX_ATTEMPTS: "4" },
  });
});

test("dispatcher settings pass through as written, and override the dev default", () => {
  const env = loadDevEnv({ MAX_ATTEMPTS: "2", MIN_BACKOFF: "10ms", REDIS_ADDRESS: "127.0.0.1:7000" });
  assert.deepEqual(env.dispatcherEnv, { MAX_ATTEMPTS: "2", MIN_BACKOFF: "10ms" });
  assert.equal(env.redisAddress, "127.0.0.1:7000");
});

test("a bad value is one line naming the variable", () => {
  assert.throws(
    () => loadDevEnv({ REDIS_ADDRESS: "http://x", LOG_LEVEL: "loud" }),
    (err: Error) =>
      err instanceof ConfigError &&
      !err.message.includes("\n") &&
      /REDIS_ADDRESS: not a Redis address/.test(err.message) &&
      /LOG_LEVEL/.test(err.message),
  );
});
