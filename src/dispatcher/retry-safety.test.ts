/**
 * Retry safety is decided on what the app receives: an Idempotency-Key the replay strips (the client
 * named it in Connection, so it is hop-by-hop) does not make retrying a POST safe.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { type RecordingServer, startRecordingServer } from "../../test/helpers/http.js";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { LOOPBACK_TARGET_ENV } from "../../test/helpers/targets.js";
import { DATA_FIELD } from "../lib/entry.js";
import { encodeEnvelope } from "../lib/envelope.js";
import { streamKeys } from "../lib/keys.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { loadDispatcherConfig } from "./config.js";
import { type Dispatcher, startDispatcher } from "./dispatcher.js";

let redisServer: TestRedisServer;
let redis: Redis;
let app: RecordingServer;

before(async () => {
  redisServer = await startRedisServer();
  redis = connectRedis(parseRedisAddress(redisServer.address), { name: "retry-safety-test" });
  app = await startRecordingServer(() => ({ status: 500 }));
});

after(async () => {
  await app.close();
  redis.disconnect();
  await redisServer.cleanup();
});

/** Dead letters of a stream as `request path -> { reason, attempts }`. */
async function deadLetters(stream: string): Promise<Map<string, { reason: string; attempts: string }>> {
  const out = new Map<string, { reason: string; attempts: string }>();
  for (const [, fields] of await redis.xrange(streamKeys(stream).deadLetter, "-", "+")) {
    const field = (name: string) => fields[fields.indexOf(name) + 1] as string;
    const request = JSON.parse(field(DATA_FIELD)) as { url: string };
    out.set(new URL(request.url).pathname, { reason: field("reason"), attempts: field("attempts") });
  }
  return out;
}

test("a POST whose Idempotency-Key is stripped by Connection is not retried after a 500; with the key it is", {
  timeout: 20_000,
}, async () => {
  const stream = `retry-safety-${randomUUID()}`;
  const post = (path: string, headers: Record<string, string[]>) =>
    redis.xadd(
      stream,
      "*",
      DATA_FIELD,
      encodeEnvelope({
        id: randomUUID(),
        url: `${app.url.replace(/\/$/, "")}${path}`,
        method: "POST",
        headers,
        body: Buffer.from("once"),
        acceptedAt: Date.now(),
      }),
    );
  await post("/stripped", { "Idempotency-Key": ["k"], Connection: ["Idempotency-Key"] });
  await post("/kept", { "Idempotency-Key": ["k2"] });

  let dispatcher: Dispatcher | undefined;
  try {
    dispatcher = await startDispatcher(
      loadDispatcherConfig({
        REDIS_ADDRESS: redisServer.address,
        REDIS_STREAM_NAME: stream,
        DISPATCH_MODE: "direct",
        PORT: "0",
        MAX_ATTEMPTS: "3",
        MIN_BACKOFF: "20ms",
        MAX_BACKOFF: "50ms",
        ...LOOPBACK_TARGET_ENV,
      }),
      { logger: createLogger("dispatcher", { level: "silent" }) },
    );
    await waitFor(async () => (await deadLetters(stream)).size === 2, {
      timeoutMs: 15_000,
      what: "both requests dead-lettered",
    });
  } finally {
    await dispatcher?.close();
  }

  const received = (path: string) => app.received.filter((r) => r.url === path);
  assert.equal(received("/stripped").length, 1, "tried once: the app never had the key");
  assert.equal(received("/stripped")[0]?.headers["idempotency-key"], undefined);
  assert.equal(received("/kept").length, 3, "retried up to MAX_ATTEMPTS: the app has the key");
  assert.equal(received("/kept")[0]?.headers["idempotency-key"], "k2");
  assert.deepEqual(Object.fromEntries(await deadLetters(stream)), {
    "/stripped": { reason: "unsafe-retry", attempts: "1" },
    "/kept": { reason: "max-attempts", attempts: "3" },
  });
});
