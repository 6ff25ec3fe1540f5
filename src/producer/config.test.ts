import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../lib/config.js";
import { loadProducerConfig, producerEnvSchema } from "./config.js";

test("defaults match the original producer and the design notes", () => {
  const config = loadProducerConfig({});
  assert.equal(config.port, 8080);
  assert.equal(config.streamName, "mystream");
  assert.equal(config.requestSizeLimit, 6_000_000);
  assert.equal(config.redis.host, "127.0.0.1");
  assert.equal(config.redis.port, 6379);
  assert.equal(config.systemNamespace, "knative-serving");
  assert.equal(config.producerName, "async-producer");
  assert.deepEqual(config.allowedTargetHosts, []);
  assert.equal(config.idempotencyTtlMs, 24 * 3_600_000);
  assert.equal(config.waitReplicas, 0);
  assert.equal(config.waitTimeoutMs, 1000);
  assert.equal(config.redisTimeoutMs, 2000);
  assert.equal(config.requireRegisteredTargets, true);
  assert.ok(Object.isFrozen(config));
});

test("settings are parsed from their env names", () => {
  const config = loadProducerConfig({
    PORT: "0",
    REDIS_ADDRESS: "redis://:secret@redis.example:6380/2",
    REDIS_STREAM_NAME: "requests",
    REQUEST_SIZE_LIMIT: "1000",
    TLS_CERT: "-----BEGIN CERTIFICATE-----",
    ALLOWED_TARGET_HOSTS: "localhost:8080, *.example.test",
    IDEMPOTENCY_TTL: "1h",
    REDIS_WAIT_REPLICAS: "1",
    REDIS_WAIT_TIMEOUT: "250ms",
    REDIS_TIMEOUT: "3s",
    REQUIRE_REGISTERED_TARGETS: "false",
  });
  assert.equal(config.port, 0);
  assert.equal(config.requireRegisteredTargets, false);
  assert.equal(config.redis.password, "secret");
  assert.equal(config.redis.db, 2);
  assert.equal(config.redis.tls?.ca, "-----BEGIN CERTIFICATE-----");
  assert.equal(config.streamName, "requests");
  assert.equal(config.requestSizeLimit, 1000);
  assert.deepEqual(config.allowedTargetHosts, [
    { host: "localhost", wildcard: false, port: 8080 },
    { host: ".example.test", wildcard: true },
  ]);
  assert.equal(config.idempotencyTtlMs, 3_600_000);
  assert.equal(config.waitReplicas, 1);
  assert.equal(config.waitTimeoutMs, 250);
  assert.equal(config.redisTimeoutMs, 3000);
});

test("the schema's keys are exactly the env names the producer reads", () => {
  assert.deepEqual(Object.keys(producerEnvSchema.shape).sort(), [
    "ALLOWED_TARGET_HOSTS",
    "BODY_IDLE_TIMEOUT",
    "HEADERS_TIMEOUT",
    "IDEMPOTENCY_TTL",
    "LOG_LEVEL",
    "PORT",
    "PRODUCER_NAME",
    "PRODUCER_WORKERS",
    "REDIS_ADDRESS",
    "REDIS_STREAM_NAME",
    "REDIS_TIMEOUT",
    "REDIS_WAIT_REPLICAS",
    "REDIS_WAIT_TIMEOUT",
    "REQUEST_BYTES_IN_FLIGHT",
    "REQUEST_READ_TIMEOUT",
    "REQUEST_SIZE_LIMIT",
    "REQUIRE_REGISTERED_TARGETS",
    "SYSTEM_NAMESPACE",
    "TARGET_PORTS",
    "TLS_CERT",
  ]);
});

for (const [name, value] of [
  ["REQUEST_SIZE_LIMIT", "6MB"],
  ["REQUEST_SIZE_LIMIT", "-1"],
  ["ALLOWED_TARGET_HOSTS", "*"],
  ["IDEMPOTENCY_TTL", "forever"],
  ["REDIS_WAIT_TIMEOUT", "0"],
  ["REDIS_ADDRESS", "http://redis:6379"],
  ["BODY_IDLE_TIMEOUT", "0"],
  ["HEADERS_TIMEOUT", "2m"],
] as const) {
  test(`a bad ${name} (${value}) is a ConfigError naming it`, () => {
    assert.throws(
      () => loadProducerConfig({ [name]: value }),
      (err: unknown) =>
        err instanceof ConfigError && err.message.includes(name) && !err.message.includes("\n"),
    );
  });
}

test("the timeouts for a request's arrival: defaults, and set from their env names", () => {
  const defaults = loadProducerConfig({});
  assert.equal(defaults.bodyIdleTimeoutMs, 10_000);
  assert.equal(defaults.headersTimeoutMs, 10_000);
  assert.equal(defaults.requestReadTimeoutMs, 60_000);
  const config = loadProducerConfig({
    BODY_IDLE_TIMEOUT: "2s",
    HEADERS_TIMEOUT: "3s",
    REQUEST_READ_TIMEOUT: "3s",
  });
  assert.equal(config.bodyIdleTimeoutMs, 2000);
  assert.equal(config.headersTimeoutMs, 3000);
  assert.equal(config.requestReadTimeoutMs, 3000);
});

test("`knative-async producer` with a bad env prints one line and exits 1", async () => {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const child = spawn(process.execPath, [join(root, "bin", "knative-async.js"), "producer"], {
    env: { PATH: process.env.PATH, REQUEST_SIZE_LIMIT: "lots", PORT: "0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  clearTimeout(timer);
  assert.equal(code, 1);
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert.match(
    lines[0] as string,
    /^knative-async producer: invalid producer configuration: REQUEST_SIZE_LIMIT/,
  );
});
