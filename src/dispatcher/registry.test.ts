/**
 * The dispatcher applies the delivery policy the async services registry holds for a request's service
 * now, over the one stored in its envelope: a policy changed by the service's owner applies to requests
 * already queued, and an envelope written straight into the stream cannot raise its own.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { type RecordingServer, startRecordingServer } from "../../test/helpers/http.js";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { fieldValue } from "../lib/entry.js";
import { type DeliveryPolicyOverrides, encodeEnvelope } from "../lib/envelope.js";
import { streamKeys } from "../lib/keys.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { AsyncServicesWriter } from "../lib/registry.js";
import { loadDispatcherConfig } from "./config.js";
import { type AttemptInfo, startDispatcher } from "./dispatcher.js";

const HOST = "app.default.svc.cluster.local";

let redisServer: TestRedisServer;
let redis: Redis;
let sink: RecordingServer;

before(async () => {
  redisServer = await startRedisServer();
  redis = connectRedis(parseRedisAddress(redisServer.address), { name: "registry-test" });
  sink = await startRecordingServer();
  // The app keeps failing with a retryable status: only the policy decides how often it is tried.
  sink.respond = () => ({ status: 502, headers: { "async-target-status": "503" } });
});

after(async () => {
  await sink.close();
  redis.disconnect();
  await redisServer.cleanup();
});

function envelope(id: string, policy: DeliveryPolicyOverrides): string {
  return encodeEnvelope({
    id,
    url: `http://${HOST}/work`,
    method: "GET",
    headers: {},
    body: Buffer.from("x"),
    acceptedAt: Date.now(),
    policy,
  });
}

/** Delivers one entry with `stored` in its envelope while the registry says `published`; its attempts. */
async function attemptsFor(stored: DeliveryPolicyOverrides, published: DeliveryPolicyOverrides) {
  const stream = `s-${randomUUID()}`;
  const keys = streamKeys(stream);
  await new AsyncServicesWriter(redis, keys).publish("default/app", { hosts: [HOST], policy: published });
  const attempts: AttemptInfo[] = [];
  const dispatcher = await startDispatcher(
    loadDispatcherConfig({
      REDIS_ADDRESS: redisServer.address,
      REDIS_STREAM_NAME: stream,
      K_SINK: sink.url,
      PORT: "0",
      MIN_BACKOFF: "20ms",
      MAX_BACKOFF: "50ms",
      DISPATCHER_NAME: `d-${randomUUID().slice(0, 8)}`,
    }),
    { logger: createLogger("dispatcher", { level: "silent" }), onAttempt: (i) => attempts.push(i) },
  );
  try {
    await redis.xadd(stream, "*", "data", envelope(randomUUID(), stored));
    await waitFor(async () => (await redis.xlen(keys.deadLetter)) === 1, {
      what: "the dead letter",
      timeoutMs: 15_000,
    });
    const [[, fields]] = (await redis.xrange(keys.deadLetter, "-", "+")) as [[string, string[]]];
    assert.equal(fieldValue(fields, "reason"), "max-attempts");
    return attempts.length;
  } finally {
    await dispatcher.close();
  }
}

describe("dispatcher and the async services registry", () => {
  test("an envelope asking for 1000 attempts gets the 2 its service has", async () => {
    assert.equal(await attemptsFor({ maxAttempts: 1000, maxAgeMs: 30 * 86_400_000 }, { maxAttempts: 2 }), 2);
  });

  test("a policy raised after the request was stored applies to it", async () => {
    assert.equal(await attemptsFor({ maxAttempts: 1 }, { maxAttempts: 3 }), 3);
  });
});
