/**
 * The consumer acts only on events our dispatcher signed, and secrets can be rotated without losing a
 * request: real producer, dispatcher and consumer processes, a real redis-server.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { streamKeys } from "../../src/lib/keys.js";
import { type RecordingServer, startRecordingServer } from "../helpers/http.js";
import { waitFor } from "../helpers/net.js";
import { killAll } from "../helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import { redisClient, requestIdOf, sendAsync, sleep, startConsumer, startPipeline } from "./pipeline.js";

let redis: TestRedisServer;
let client: Redis;
let app: RecordingServer;

before(async () => {
  redis = await startRedisServer();
  client = redisClient(redis);
  app = await startRecordingServer();
});

after(async () => {
  await killAll();
  client.disconnect();
  await app.close();
  await redis.cleanup();
});

test("a consumer with another secret refuses every event; the requests wait, and arrive once the secrets agree", async () => {
  const pipeline = await startPipeline(redis, app, {
    dispatcher: {
      EVENT_SIGNING_SECRETS: "new-secret",
      MIN_BACKOFF: "200ms",
      MAX_BACKOFF: "400ms",
      MAX_ATTEMPTS: "1000",
    },
    consumer: { EVENT_SIGNING_SECRETS: "old-secret" },
  });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const sent = await sendAsync(pipeline.producer, app, `/signed/${i}`, { body: `n=${i}` });
    assert.equal(sent.status, 202);
    ids.push(sent.id as string);
  }
  await sleep(1500);
  assert.equal(app.received.length, 0, "nothing reached the app through a consumer that refuses the events");
  assert.equal(await client.xlen(streamKeys(pipeline.stream).deadLetter), 0, "and nothing was dead-lettered");

  // The rotation's first step: the consumer accepts both secrets. The waiting requests now arrive.
  await pipeline.consumer.kill();
  await startConsumer({ EVENT_SIGNING_SECRETS: "old-secret,new-secret" }, { port: pipeline.consumer.port });
  await waitFor(() => ids.every((id) => app.received.some((r) => requestIdOf(r) === id)), {
    timeoutMs: 20_000,
  });
  assert.equal(await client.xlen(streamKeys(pipeline.stream).deadLetter), 0);
});
