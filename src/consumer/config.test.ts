import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../lib/config.js";
import { DEFAULT_RETRYABLE_STATUSES } from "../lib/outcome.js";
import { consumerEnvSchema, DEFAULT_EVENT_SIZE_LIMIT, loadConsumerConfig } from "./config.js";

test("defaults follow Knative and the producer's limits", () => {
  const config = loadConsumerConfig({ EVENT_SIGNING_SECRETS: "s3cret" });
  assert.deepEqual(config, {
    port: 8080,
    logLevel: "info",
    requestTimeoutMs: 5 * 60_000,
    maxRequestTimeoutMs: 15 * 60_000,
    maxConnectionsPerHost: 256,
    eventSizeLimit: DEFAULT_EVENT_SIZE_LIMIT,
    retryableStatusCodes: DEFAULT_RETRYABLE_STATUSES,
    targets: {
      allowed: [],
      forbidden: [],
      forbiddenNamespaces: ["kube-system", "knative-serving"],
      servicePorts: [80, 443],
    },
    authentication: { keys: [Buffer.from("s3cret")], acceptUnsigned: false, toleranceMs: 300_000 },
  });
  assert.ok(Object.isFrozen(config));
  // A 6 MB binary body, base64 in the envelope, the envelope a JSON string in the field list.
  assert.ok(DEFAULT_EVENT_SIZE_LIMIT > (6_000_000 * 4) / 3 + 64 * 1024);
});

test("every setting is read from its env name", () => {
  const config = loadConsumerConfig({
    EVENT_ACCEPT_UNSIGNED: "true",
    PORT: "9090",
    LOG_LEVEL: "debug",
    REQUEST_TIMEOUT: "30s",
    MAX_REQUEST_TIMEOUT: "1h",
    MAX_CONNECTIONS_PER_HOST: "16",
    EVENT_SIZE_LIMIT: "1000000",
    RETRYABLE_STATUS_CODES: "503, 504",
  });
  assert.equal(config.port, 9090);
  assert.equal(config.logLevel, "debug");
  assert.equal(config.requestTimeoutMs, 30_000);
  assert.equal(config.maxRequestTimeoutMs, 3_600_000);
  assert.equal(config.maxConnectionsPerHost, 16);
  assert.equal(config.eventSizeLimit, 1_000_000);
  assert.deepEqual(config.retryableStatusCodes, [503, 504]);
  assert.deepEqual(Object.keys(consumerEnvSchema.shape).sort(), [
    "ALLOWED_TARGET_HOSTS",
    "EVENT_ACCEPT_UNSIGNED",
    "EVENT_SIGNATURE_TOLERANCE",
    "EVENT_SIGNING_SECRETS",
    "EVENT_SIZE_LIMIT",
    "LOG_LEVEL",
    "MAX_CONNECTIONS_PER_HOST",
    "MAX_REQUEST_TIMEOUT",
    "OIDC_AUDIENCE",
    "OIDC_ISSUER",
    "OIDC_JWKS_URL",
    "OIDC_SUBJECTS",
    "PORT",
    "REQUEST_TIMEOUT",
    "RETRYABLE_STATUS_CODES",
    "SYSTEM_NAMESPACE",
    "TARGET_PORTS",
  ]);
});

test("bad values are one readable error naming the variable", () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ REQUEST_TIMEOUT: "soon" }, /REQUEST_TIMEOUT: must be a duration/],
    [{ REQUEST_TIMEOUT: "20m" }, /REQUEST_TIMEOUT: must not be larger than MAX_REQUEST_TIMEOUT/],
    [{ RETRYABLE_STATUS_CODES: "503,abc" }, /RETRYABLE_STATUS_CODES: must be a comma-separated list/],
    [{ MAX_CONNECTIONS_PER_HOST: "0" }, /MAX_CONNECTIONS_PER_HOST/],
    [{ PORT: "70000" }, /PORT/],
    [
      { EVENT_SIGNING_SECRETS: "" },
      /EVENT_SIGNING_SECRETS: is required: the consumer accepts only events signed/,
    ],
    [{ EVENT_SIGNING_SECRETS: " , " }, /EVENT_SIGNING_SECRETS: is required/],
  ];
  for (const [env, message] of cases) {
    assert.throws(
      () => loadConsumerConfig(env),
      (err: unknown) =>
        err instanceof ConfigError && message.test(err.message) && !err.message.includes("\n"),
      JSON.stringify(env),
    );
  }
});
