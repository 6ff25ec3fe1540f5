/**
 * Retries, dead-lettering and timeouts through the real processes: a target that asks to be called
 * later, one that always fails (and the real `knative-async dlq` CLI to inspect and replay it), and one
 * that never answers. The times are the ones the target saw.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { type Received, type RecordingServer, startRecordingServer } from "../helpers/http.js";
import { waitFor } from "../helpers/net.js";
import { killAll, runCommand } from "../helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import {
  attemptOf,
  leftovers,
  metricValue,
  type Pipeline,
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

function receivedAt(path: string): Received[] {
  return app.received.filter((r) => r.url === path);
}

async function drained(pipeline: Pipeline, deadLettered = 0): Promise<void> {
  await waitFor(
    async () => {
      const left = await leftovers(client, pipeline.stream);
      return (
        left.stream === 0 &&
        left.pending === 0 &&
        left.retryScheduled === 0 &&
        left.deadLettered === deadLettered
      );
    },
    { timeoutMs: 10_000, what: "the stream, pending list and retry schedule empty" },
  );
}

async function stop(pipeline: Pipeline): Promise<void> {
  const exits = await Promise.all([
    pipeline.producer.kill(),
    pipeline.dispatcher.kill(),
    pipeline.consumer.kill(),
  ]);
  assert.deepEqual(
    exits.map((e) => e.code),
    [0, 0, 0],
    "each component exits 0 on SIGTERM",
  );
}

test("503 with Retry-After: 1 three times, then 200: delivered on the 4th attempt, each retry at least 1 s later", {
  timeout: 30_000,
}, async (t) => {
  // MIN_BACKOFF is 100 ms: without Retry-After the retries would come much sooner.
  const pipeline = await startPipeline(redis, app);
  const path = "/flaky";
  app.respond = (r) =>
    r.url === path && receivedAt(path).length <= 3
      ? { status: 503, headers: { "retry-after": "1" } }
      : { status: 200 };

  // A POST without an Idempotency-Key: a 503 says the app did not process it, so it is retried anyway.
  const sent = await sendAsync(pipeline.producer, app, path, { body: "once, please" });
  assert.equal(sent.status, 202);
  await waitFor(() => receivedAt(path).length === 4, { timeoutMs: 15_000, what: "4 attempts" });
  await drained(pipeline);
  await sleep(500);

  const seen = receivedAt(path);
  assert.equal(seen.length, 4, "acknowledged after the 200: no 5th attempt");
  assert.deepEqual(seen.map(requestIdOf), [sent.id, sent.id, sent.id, sent.id]);
  assert.deepEqual(seen.map(attemptOf), [1, 2, 3, 4]);
  assert.ok(seen.every((r) => r.body.toString() === "once, please"));
  const gaps = seen.slice(1).map((r, i) => r.at - (seen[i] as Received).at);
  for (const gap of gaps) {
    assert.ok(gap >= 1000, `a retry came ${gap} ms after the previous attempt, before Retry-After allowed`);
    assert.ok(gap < 3000, `a retry came ${gap} ms after the previous attempt, far later than due`);
  }
  t.diagnostic(`gaps between attempts as the target saw them: ${gaps.join(", ")} ms`);
  await stop(pipeline);
});

test("a target that always answers 500: dead-lettered after MAX_ATTEMPTS with its context; `dlq replay` delivers it once fixed", {
  timeout: 30_000,
}, async () => {
  const pipeline = await startPipeline(redis, app, { dispatcher: { MAX_ATTEMPTS: "3" } });
  app.respond = () => ({ status: 500, body: "boom" });

  // PUT is idempotent, so it is retried up to MAX_ATTEMPTS. A POST without an Idempotency-Key may have
  // been processed before the 500, so it is dead-lettered at once rather than done twice.
  const put = await sendAsync(pipeline.producer, app, "/broken", { method: "PUT", body: "fix me" });
  const post = await sendAsync(pipeline.producer, app, "/broken-post", { body: "not twice" });
  assert.equal(put.status, 202);
  assert.equal(post.status, 202);
  await waitFor(async () => (await leftovers(client, pipeline.stream)).deadLettered === 2, {
    timeoutMs: 15_000,
    what: "both dead-lettered",
  });
  await drained(pipeline, 2);
  await sleep(300);
  assert.equal(receivedAt("/broken").length, 3, "three attempts, then no more");
  assert.equal(receivedAt("/broken-post").length, 1, "the POST was tried once");

  const listed = await runCommand(["dlq", "list", "--json"], pipeline.dlqEnv);
  assert.equal(listed.code, 0, listed.stderr);
  const items = listed.stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const byRequest = new Map(items.map((item) => [item.requestId, item]));
  assert.equal(items.length, 2);
  assert.deepEqual(
    { ...byRequest.get(put.id), id: undefined, deadLetteredAt: undefined },
    {
      id: undefined,
      requestId: put.id,
      method: "PUT",
      url: `http://127.0.0.1:${app.port}/broken`,
      reason: "max-attempts",
      attempts: 3,
      lastStatus: "500",
      lastError: "target answered 500",
      deadLetteredAt: undefined,
    },
  );
  assert.equal(byRequest.get(post.id)?.reason, "unsafe-retry");
  assert.equal(byRequest.get(post.id)?.attempts, 1);

  const deadId = byRequest.get(put.id)?.id as string;
  const shown = await runCommand(["dlq", "show", deadId], pipeline.dlqEnv);
  assert.equal(shown.code, 0, shown.stderr);
  const detail = JSON.parse(shown.stdout) as {
    firstAttemptAt: string;
    lastAttemptAt: string;
    deadLetteredAt: string;
    request: { id: string; body: string };
  };
  const attempts = receivedAt("/broken");
  const first = Date.parse(detail.firstAttemptAt);
  const last = Date.parse(detail.lastAttemptAt);
  assert.ok(first <= (attempts[0] as Received).at, "first attempt time: when the first delivery started");
  assert.ok(last >= (attempts[2] as Received).at, "last attempt time: after the last answer");
  assert.ok(Date.parse(detail.deadLetteredAt) >= last);
  assert.equal(detail.request.id, put.id);
  assert.equal(detail.request.body, "fix me");

  app.respond = () => ({ status: 200 });
  const replayed = await runCommand(["dlq", "replay", deadId], pipeline.dlqEnv);
  assert.equal(replayed.code, 0, replayed.stderr);
  assert.match(replayed.stdout, /replayed 1/);
  await waitFor(() => receivedAt("/broken").length === 4, { timeoutMs: 10_000, what: "the replay" });
  await drained(pipeline, 1);
  await sleep(300);
  const again = receivedAt("/broken");
  assert.equal(again.length, 4, "delivered once after the replay");
  assert.equal(
    requestIdOf(again[3] as Received),
    put.id,
    "same Async-Request-Id, so the app can deduplicate",
  );
  assert.equal(attemptOf(again[3] as Received), 1, "a replay starts over with a full set of attempts");
  assert.equal((again[3] as Received).body.toString(), "fix me");
  assert.equal(receivedAt("/broken-post").length, 1, "replaying one entry leaves the other dead-lettered");
  await stop(pipeline);
});

test("a target that hangs: the attempt times out and is retried, and the only slot is free for later entries", {
  timeout: 30_000,
}, async (t) => {
  const pipeline = await startPipeline(redis, app, {
    consumer: { REQUEST_TIMEOUT: "1s" },
    dispatcher: { REQUEST_TIMEOUT: "1s", DISPATCH_CONCURRENCY: "1" },
  });
  // The first call of /hang never gets an answer (until the caller gives up and closes); the rest are fine.
  app.respond = (r, res) => {
    if (r.url === "/hang" && receivedAt("/hang").length === 1) {
      return new Promise<void>((resolve) => res.once("close", resolve));
    }
    return { status: 200 };
  };

  const hung = await sendAsync(pipeline.producer, app, "/hang", { method: "PUT", body: "slow" });
  assert.equal(hung.status, 202);
  for (let i = 0; i < 5; i++) {
    assert.equal((await sendAsync(pipeline.producer, app, `/later/${i}`, { method: "PUT" })).status, 202);
  }
  await waitFor(
    () =>
      receivedAt("/hang").length === 2 &&
      app.received.filter((r) => r.url.startsWith("/later/")).length === 5,
    {
      timeoutMs: 15_000,
      what: "the retry of /hang and the 5 later entries",
    },
  );
  await drained(pipeline);

  const order = app.received.filter((r) => r.url === "/hang" || r.url.startsWith("/later/"));
  // One slot: the later entries wait for the timeout, then go first; the retry went to the stream's end.
  assert.deepEqual(
    order.map((r) => r.url),
    ["/hang", "/later/0", "/later/1", "/later/2", "/later/3", "/later/4", "/hang"],
  );
  const [firstTry, afterTimeout] = order as [Received, Received];
  const held = afterTimeout.at - firstTry.at;
  assert.ok(held >= 900, `the slot was held for the 1 s timeout (${held} ms)`);
  assert.ok(held < 4000, `the slot was freed soon after the timeout (${held} ms)`);
  assert.deepEqual(receivedAt("/hang").map(attemptOf), [1, 2]);
  assert.equal(
    await metricValue(pipeline.dispatcher, "knative_async_dispatcher_attempts_total", {
      result: "retry",
      reason: "ASYNC_ERR_TARGET_TIMEOUT",
    }),
    1,
    "one attempt timed out and was scheduled for a retry",
  );
  assert.equal(
    await metricValue(pipeline.dispatcher, "knative_async_dispatcher_in_flight"),
    0,
    "no stuck slot",
  );
  t.diagnostic(`the hung attempt held the only slot for ${held} ms (REQUEST_TIMEOUT 1s)`);
  await stop(pipeline);
});
