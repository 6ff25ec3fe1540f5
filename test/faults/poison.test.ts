/**
 * A poisoned entry (its data is a torn envelope, as a crashed or foreign writer could leave) in the
 * middle of 100 good ones written by the real producer: the good ones are delivered, the bad one is
 * dead-lettered once, and nothing loops afterwards.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { fieldValue } from "../../src/lib/entry.js";
import { encodeEnvelope } from "../../src/lib/envelope.js";
import { streamKeys } from "../../src/lib/keys.js";
import { type RecordingServer, startRecordingServer } from "../helpers/http.js";
import { freePort, waitFor } from "../helpers/net.js";
import { killAll, runCommand } from "../helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import {
  deliveriesById,
  leftovers,
  metricValue,
  redisClient,
  sendAsync,
  sleep,
  startConsumer,
  startDispatcher,
  startProducer,
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

test("a poisoned entry among 100 good ones: the 100 delivered, the bad one dead-lettered once, nothing loops", {
  timeout: 30_000,
}, async () => {
  const stream = "poison";
  const keys = streamKeys(stream);
  const consumerPort = await freePort();
  const [producer, consumer] = await Promise.all([
    startProducer(redis, stream, app),
    startConsumer({}, { port: consumerPort }),
  ]);
  const accepted: string[] = [];
  const send = async (n: number) => {
    const sent = await sendAsync(producer, app, `/good/${n}`, { body: `good ${n}` });
    assert.equal(sent.status, 202);
    accepted.push(sent.id as string);
  };
  for (let n = 0; n < 50; n++) await send(n);
  const torn = encodeEnvelope({
    id: "torn",
    url: `http://127.0.0.1:${app.port}/poison`,
    method: "POST",
    headers: {},
    body: Buffer.from("never delivered"),
  }).slice(0, 40);
  const poisonId = (await client.xadd(stream, "*", "data", torn)) as string;
  for (let n = 50; n < 100; n++) await send(n);

  // The dispatcher starts after all 101 are written, so the poison is read in the middle of a batch.
  const dispatcher = await startDispatcher(redis, stream, consumer.url, "d-poison");
  await waitFor(() => deliveriesById(app.received).size === 100, {
    timeoutMs: 15_000,
    what: "100 delivered",
  });
  await waitFor(
    async () => {
      const left = await leftovers(client, stream);
      return left.stream === 0 && left.pending === 0 && left.deadLettered === 1;
    },
    { timeoutMs: 10_000, what: "the stream drained and one entry dead-lettered" },
  );

  const delivered = deliveriesById(app.received);
  assert.deepEqual([...delivered.keys()].sort(), [...accepted].sort(), "the 100 good ones, and only them");
  assert.ok(
    [...delivered.values()].every((n) => n === 1),
    "each once",
  );
  const [[deadId, fields] = ["", []]] = (await client.xrange(keys.deadLetter, "-", "+")) as [
    string,
    string[],
  ][];
  assert.equal(fieldValue(fields, "data"), torn, "the entry is kept as it was, to be inspected");
  assert.equal(fieldValue(fields, "reason"), "malformed");
  assert.equal(fieldValue(fields, "sourceEntryId"), poisonId);
  assert.equal(fieldValue(fields, "attempts"), "1");
  assert.match(fieldValue(fields, "lastError") ?? "", /ASYNC_ERR_MALFORMED_EVENT/);

  // Longer than CLAIM_IDLE (2s) and several promotion rounds: a looping entry would show up by then.
  await sleep(2500);
  assert.equal(app.received.length, 100, "nothing more reached the app");
  assert.deepEqual(await leftovers(client, stream), {
    stream: 0,
    pending: 0,
    retryScheduled: 0,
    deadLettered: 1,
  });
  assert.equal(
    await metricValue(dispatcher, "knative_async_dispatcher_attempts_total", {
      result: "dead-letter",
      reason: "malformed",
    }),
    1,
    "dead-lettered once",
  );
  assert.equal(
    await metricValue(dispatcher, "knative_async_dispatcher_attempts_total", { result: "delivered" }),
    100,
    "100 deliveries, no retries",
  );

  // The CLI shows it as undecodable rather than failing on it.
  const listed = await runCommand(["dlq", "list"], {
    REDIS_ADDRESS: redis.address,
    REDIS_STREAM_NAME: stream,
  });
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, new RegExp(`${deadId}.*malformed.*attempts=1.*\\(undecodable: `));
  await Promise.all([producer.kill(), dispatcher.kill(), consumer.kill()]);
});
