/**
 * Crash recovery with real processes and real signals: the dispatcher and the consumer are killed with
 * SIGKILL while 1,000 requests accepted by the real producer are queued and some are being delivered.
 * A new consumer and a new dispatcher (another consumer name in the group) finish the work. Every
 * accepted id reaches the app; the only duplicates are deliveries that were in flight at the kill,
 * that is entries pending on the dead dispatcher, each delivered at most once more.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { DATA_FIELD, fieldValue } from "../../src/lib/entry.js";
import { decodeEnvelope } from "../../src/lib/envelope.js";
import { type RecordingServer, startRecordingServer } from "../helpers/http.js";
import { waitFor } from "../helpers/net.js";
import { killAll } from "../helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import {
  attemptOf,
  deliveriesById,
  leftovers,
  metricValue,
  redisClient,
  requestIdOf,
  sendAsync,
  sleep,
  startConsumer,
  startDispatcher,
  startProducer,
} from "./pipeline.js";

const REQUESTS = 1000;
const GROUP = "knative-async";

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

test("kill -9 of dispatcher and consumer with 1,000 queued: every accepted id delivered, duplicates only of what was in flight", {
  timeout: 75_000,
}, async (t) => {
  const stream = "crash";
  // The app takes 50-250 ms per request, so at the kill some deliveries wait for it and some of its
  // answers are on their way back through the consumer and the dispatcher.
  let open = 0;
  app.respond = async () => {
    open++;
    try {
      await sleep(50 + Math.random() * 200);
      return { status: 200 };
    } finally {
      open--;
    }
  };

  const [producer, consumerA] = await Promise.all([startProducer(redis, stream, app), startConsumer()]);
  const accepted: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < REQUESTS) {
        const n = next++;
        const sent = await sendAsync(producer, app, `/work/${n}`, { body: `{"n":${n}}` });
        assert.equal(sent.status, 202, sent.body);
        accepted.push(sent.id as string);
      }
    }),
  );
  const acceptedSet = new Set(accepted);
  assert.equal(acceptedSet.size, REQUESTS, "1,000 distinct ids accepted");
  assert.equal(await client.xlen(stream), REQUESTS, "all 1,000 are in the stream");

  const dispatcherA = await startDispatcher(redis, stream, consumerA.url, "dispatcher-a", {
    DISPATCH_CONCURRENCY: "50",
  });
  await waitFor(() => app.received.length >= 150, { timeoutMs: 20_000, what: "150 deliveries started" });

  // Both at once, as a node failure would take them.
  const killedDispatcher = dispatcherA.kill("SIGKILL");
  const killedConsumer = consumerA.kill("SIGKILL");
  const openAtKill = open;
  const receivedAtKill = app.received.length;
  assert.equal((await killedDispatcher).signal, "SIGKILL");
  assert.equal((await killedConsumer).signal, "SIGKILL");

  // What was in flight: the entries pending on the dead dispatcher. Nobody can change them until the
  // new dispatcher claims them, so reading them now is exact.
  const pending = (await client.xpending(stream, GROUP, "-", "+", REQUESTS, "dispatcher-a")) as [
    string,
    string,
    number,
    number,
  ][];
  const inFlightIds = new Set<string>();
  for (const [entryId] of pending) {
    const [[, fields] = ["", []]] = (await client.xrange(stream, entryId, entryId)) as [string, string[]][];
    inFlightIds.add(decodeEnvelope(fieldValue(fields, DATA_FIELD) as string).id);
  }
  const queuedAtKill = (await client.xlen(stream)) - pending.length;
  assert.ok(pending.length > 0, "some deliveries were in flight at the kill");
  assert.ok(pending.length <= 50, "no more in flight than DISPATCH_CONCURRENCY");
  assert.ok(queuedAtKill >= 500, `most of the 1,000 were still queued (${queuedAtKill})`);

  app.respond = () => ({ status: 200 });
  // The consumer first: entries are waiting, and the dispatcher would find no consumer to deliver to.
  const consumerB = await startConsumer();
  const dispatcherB = await startDispatcher(redis, stream, consumerB.url, "dispatcher-b", {
    DISPATCH_CONCURRENCY: "50",
  });

  const missing = () => {
    const delivered = deliveriesById(app.received);
    return accepted.filter((id) => !delivered.has(id));
  };
  await waitFor(() => missing().length === 0, {
    timeoutMs: 40_000,
    intervalMs: 100,
    what: "every accepted id at the app",
  });
  await waitFor(async () => Object.values(await leftovers(client, stream)).every((n) => n === 0), {
    timeoutMs: 10_000,
    what: "stream, pending list, retry schedule and dead-letter stream all empty",
  });
  await sleep(300);

  const delivered = deliveriesById(app.received);
  assert.deepEqual(missing(), [], "none is lost");
  assert.deepEqual(
    [...delivered.keys()].filter((id) => !acceptedSet.has(id)),
    [],
    "nothing the producer did not accept",
  );
  const duplicated = [...delivered].filter(([, n]) => n > 1);
  const duplicates = duplicated.reduce((sum, [, n]) => sum + n - 1, 0);
  for (const [id, n] of duplicated) {
    assert.ok(inFlightIds.has(id), `${id} was delivered twice but was not in flight at the kill`);
    assert.equal(n, 2, `${id} delivered ${n} times`);
  }
  assert.ok(duplicates <= pending.length);
  // A delivery after the takeover counts the crashed one: the app sees Async-Attempt 2.
  for (const received of app.received) {
    if (attemptOf(received) !== 1) {
      assert.ok(inFlightIds.has(requestIdOf(received) as string), "only taken-over entries are retried");
      assert.equal(attemptOf(received), 2);
    }
  }
  assert.equal(
    await metricValue(dispatcherB, "knative_async_dispatcher_claimed_total"),
    pending.length,
    "the new dispatcher took over exactly the dead one's pending entries",
  );
  t.diagnostic(
    `at the kill: ${receivedAtKill} requests had reached the app, ${openAtKill} were open at the app, ` +
      `${pending.length} entries pending on the dead dispatcher, ${queuedAtKill} queued; ` +
      `after: ${delivered.size} ids delivered, ${duplicates} duplicate deliveries (bound ${pending.length})`,
  );
  await Promise.all([producer.kill(), dispatcherB.kill(), consumerB.kill()]);
});
