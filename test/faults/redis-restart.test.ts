/**
 * Redis killed (SIGKILL, the harshest stop) and restarted during a load through the real producer, with
 * `appendonly yes` and `appendfsync always`: every request that got a 202 is delivered. Requests that
 * got a 503 were not accepted and need not be delivered; some still are, when Redis applied the write
 * but died before answering: those must have been told "may have been stored"
 * (ASYNC_ERR_STORE_UNCONFIRMED, with the id they were delivered under), never "not stored", which is
 * why clients retry with an Idempotency-Key.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { ErrorCode } from "../../src/lib/errors.js";
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
  redis = await startRedisServer({ appendOnly: true });
  client = redisClient(redis);
  app = await startRecordingServer();
});

after(async () => {
  await killAll();
  await app.close();
  client.disconnect();
  await redis.cleanup();
});

interface Outcome {
  readonly n: number;
  readonly status: number;
  readonly id: string | undefined;
  /** The error code of a refusal. */
  readonly code: string | undefined;
  readonly phase: "before" | "down" | "after";
}

test("Redis restarted (AOF, appendfsync always) during a load: every 202 is delivered", {
  timeout: 60_000,
}, async (t) => {
  // A slow app and few delivery slots: deliveries fall behind the load, so at the kill a backlog is
  // queued and some deliveries are in flight, and all of it must survive the restart.
  app.respond = async () => {
    await sleep(20);
    return { status: 200 };
  };
  const { producer, consumer, dispatcher, stream } = await startPipeline(redis, app, {
    dispatcher: { DISPATCH_CONCURRENCY: "4" },
  });
  let phase: Outcome["phase"] = "before";
  let loading = true;
  const outcomes: Outcome[] = [];
  let next = 0;
  const load = Promise.all(
    Array.from({ length: 8 }, async () => {
      while (loading) {
        const n = next++;
        const sentIn = phase;
        const sent = await sendAsync(producer, app, `/load/${n}`, { body: `request ${n}` });
        const code = sent.status === 202 ? undefined : (JSON.parse(sent.body) as { error: string }).error;
        outcomes.push({ n, status: sent.status, id: sent.id, code, phase: sentIn });
        await sleep(10);
      }
    }),
  );

  await sleep(1000);
  const backlogAtKill = await client.xlen(stream);
  phase = "down";
  await redis.stop("SIGKILL");
  await sleep(1000);
  await redis.start();
  phase = "after";
  // Until the producer has reconnected and accepted again for a while.
  await waitFor(() => outcomes.filter((o) => o.phase === "after" && o.status === 202).length >= 100, {
    timeoutMs: 15_000,
    what: "202s after the restart",
  });
  loading = false;
  await load;

  const accepted = outcomes.filter((o) => o.status === 202);
  const refused = outcomes.filter((o) => o.status === 503);
  assert.deepEqual(
    outcomes.filter((o) => o.status !== 202 && o.status !== 503),
    [],
    "every answer is 202 or 503",
  );
  assert.ok(
    accepted.some((o) => o.phase === "before"),
    "accepted before the kill",
  );
  assert.ok(refused.length > 0, "the load ran into the outage");
  assert.ok(backlogAtKill > 0, "entries were waiting for delivery at the kill");

  const missing = () => {
    const delivered = deliveriesById(app.received);
    return accepted.filter((o) => !delivered.has(o.id as string));
  };
  await waitFor(() => missing().length === 0, {
    timeoutMs: 20_000,
    intervalMs: 100,
    what: "every 202 delivered",
  });
  await waitFor(async () => Object.values(await leftovers(client, stream)).every((n) => n === 0), {
    timeoutMs: 10_000,
    what: "stream, pending list, retry schedule and dead-letter stream empty",
  });

  // The 503s were not accepted; some arrived anyway (written, but the answer was lost). Those must have
  // said "may have been stored", under the id they arrived with.
  const idByPath = new Map(app.received.map((r) => [r.url, requestIdOf(r)]));
  const refusedButDelivered = refused.filter((o) => idByPath.has(`/load/${o.n}`));
  assert.deepEqual(
    refusedButDelivered.filter(
      (o) => o.code !== ErrorCode.StoreUnconfirmed || o.id !== idByPath.get(`/load/${o.n}`),
    ),
    [],
    "every 503 that was delivered anyway said 'may have been stored' and named its id",
  );
  const byCode = new Map<string, number>();
  for (const o of refused) byCode.set(o.code ?? "", (byCode.get(o.code ?? "") ?? 0) + 1);
  const delivered = deliveriesById(app.received);
  const duplicates = [...delivered.values()].reduce((sum, n) => sum + n - 1, 0);
  t.diagnostic(
    `${outcomes.length} requests: ${accepted.length} got 202 (all delivered; ` +
      `${accepted.filter((o) => o.phase === "before").length} before the kill, ` +
      `${accepted.filter((o) => o.phase === "after").length} after the restart), ${refused.length} got 503 ` +
      `(${[...byCode].map(([code, n]) => `${n} ${code}`).join(", ")}; ` +
      `${refusedButDelivered.length} of them delivered anyway); ${backlogAtKill} undelivered at the kill; ` +
      `${duplicates} duplicate deliveries`,
  );
  await Promise.all([producer.kill(), dispatcher.kill(), consumer.kill()]);
});
