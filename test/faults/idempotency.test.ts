/**
 * Idempotency-Key through the real producer: the same key and request again (one after the other, or
 * many at once) get the first 202 and are delivered once; the same key with another payload is 422 and
 * stores nothing.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { type RecordingServer, startRecordingServer } from "../helpers/http.js";
import { waitFor } from "../helpers/net.js";
import { killAll } from "../helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import {
  deliveriesById,
  leftovers,
  redisClient,
  requestIdOf,
  sendAsync,
  sleep,
  startPipeline,
} from "./pipeline.js";

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
  await app.close();
  client.disconnect();
  await redis.cleanup();
});

test("Idempotency-Key: the same key twice is one delivery; a different payload is 422", {
  timeout: 30_000,
}, async () => {
  const pipeline = await startPipeline(redis, app);
  const { producer } = pipeline;
  const order = { headers: { "idempotency-key": '"order-1"', "content-type": "application/json" } };

  const first = await sendAsync(producer, app, "/orders", { ...order, body: '{"qty":1}' });
  assert.equal(first.status, 202, first.body);
  assert.ok(first.id);
  assert.equal(first.headers["idempotent-replayed"], undefined);
  const again = await sendAsync(producer, app, "/orders", { ...order, body: '{"qty":1}' });
  assert.equal(again.status, 202);
  assert.equal(again.id, first.id, "the first request's id");
  assert.equal(again.headers["idempotent-replayed"], "true");

  const otherBody = await sendAsync(producer, app, "/orders", { ...order, body: '{"qty":2}' });
  assert.equal(otherBody.status, 422, otherBody.body);
  assert.equal(JSON.parse(otherBody.body).error, "ASYNC_ERR_IDEMPOTENCY_MISMATCH");
  const otherPath = await sendAsync(producer, app, "/refunds", { ...order, body: '{"qty":1}' });
  assert.equal(otherPath.status, 422, "the target is part of the fingerprint too");

  // Many at once with a new key: one of them stores the request, all get its id.
  const burst = await Promise.all(
    Array.from({ length: 20 }, () =>
      sendAsync(producer, app, "/orders", {
        headers: { "idempotency-key": "order-2" },
        body: '{"qty":3}',
      }),
    ),
  );
  assert.deepEqual(new Set(burst.map((s) => s.status)), new Set([202]));
  assert.equal(new Set(burst.map((s) => s.id)).size, 1, "one id for the whole burst");
  assert.equal(
    burst.filter((s) => s.headers["idempotent-replayed"] === undefined).length,
    1,
    "one stored it",
  );
  const burstId = burst[0]?.id as string;

  await waitFor(() => deliveriesById(app.received).size === 2, { timeoutMs: 10_000, what: "both delivered" });
  await waitFor(async () => Object.values(await leftovers(client, pipeline.stream)).every((n) => n === 0), {
    timeoutMs: 10_000,
    what: "everything acknowledged",
  });
  await sleep(500);
  // Delivered concurrently, so in either order.
  const seen = new Map(app.received.map((r) => [requestIdOf(r), r]));
  assert.equal(app.received.length, 2, "each key delivered once; the refused requests never");
  assert.equal(seen.get(first.id)?.body.toString(), '{"qty":1}');
  assert.equal(seen.get(burstId)?.body.toString(), '{"qty":3}');
  assert.deepEqual(
    seen.get(first.id)?.headersDistinct["idempotency-key"],
    ['"order-1"'],
    "the app gets the key too, to deduplicate on its side",
  );
  await Promise.all([producer.kill(), pipeline.dispatcher.kill(), pipeline.consumer.kill()]);
});
