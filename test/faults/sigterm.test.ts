/**
 * SIGTERM (a rollout, a node drain) while deliveries are in flight: the dispatcher stops reading,
 * lets the in-flight deliveries finish, acknowledges them and exits 0. Nothing is lost and nothing is
 * delivered twice when a new dispatcher starts.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { encodeEnvelope } from "../../src/lib/envelope.js";
import { type RecordingServer, startRecordingServer } from "../helpers/http.js";
import { waitFor } from "../helpers/net.js";
import { killAll } from "../helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import {
  deliveriesById,
  leftovers,
  redisClient,
  requestIdOf,
  startConsumer,
  startDispatcher,
} from "./pipeline.js";

let redis: TestRedisServer;
let client: Redis;
let app: RecordingServer;

before(async () => {
  redis = await startRedisServer();
  client = redisClient(redis);
  app = await startRecordingServer(async () => {
    await new Promise((r) => setTimeout(r, 1500));
    return { status: 200 };
  });
});

after(async () => {
  await killAll();
  await app.close();
  client.disconnect();
  await redis.cleanup();
});

test("SIGTERM to the dispatcher and the consumer with deliveries in flight loses none", {
  timeout: 30_000,
}, async () => {
  const stream = `sigterm-${randomUUID()}`;
  const ids = Array.from({ length: 8 }, (_, i) => `term-${i}-${randomUUID()}`);
  for (const id of ids) {
    const envelope = encodeEnvelope({
      id,
      url: `${app.url}work/${id}`,
      method: "PUT",
      headers: {},
      body: Buffer.from(id),
      acceptedAt: Date.now(),
    });
    await client.xadd(stream, "*", "data", envelope);
  }
  const consumer = await startConsumer();
  const dispatcher = await startDispatcher(redis, stream, consumer.url, "terminated");
  await waitFor(() => app.received.length === ids.length, {
    timeoutMs: 10_000,
    what: "all 8 in flight at the app",
  });

  // Both get SIGTERM at once, as on a node drain, while the app still holds all 8 answers.
  const [dispatcherExit, consumerExit] = await Promise.all([
    dispatcher.kill("SIGTERM", 15_000),
    consumer.kill("SIGTERM", 15_000),
  ]);
  assert.deepEqual(dispatcherExit, { code: 0, signal: null }, dispatcher.output());
  assert.deepEqual(consumerExit, { code: 0, signal: null }, consumer.output());
  const left = await leftovers(client, stream);
  assert.equal(left.pending, 0, "every in-flight entry was acknowledged before the exit");
  assert.equal(left.stream, 0);

  // A new dispatcher finds nothing to deliver again.
  const consumer2 = await startConsumer();
  const dispatcher2 = await startDispatcher(redis, stream, consumer2.url, "successor");
  await new Promise((r) => setTimeout(r, 2500));
  await Promise.all([dispatcher2.kill("SIGTERM"), consumer2.kill("SIGTERM")]);
  const counts = deliveriesById(app.received);
  assert.deepEqual([...counts.keys()].sort(), [...ids].sort());
  assert.ok(
    [...counts.values()].every((n) => n === 1),
    "each delivered once",
  );
  assert.ok(app.received.every((r) => requestIdOf(r) !== undefined));
});
