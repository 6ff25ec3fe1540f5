import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { HTTP } from "cloudevents";
import type { Redis } from "ioredis";
import { type RecordingServer, startRecordingServer } from "../../test/helpers/http.js";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { fieldValue } from "../lib/entry.js";
import { encodeEnvelope } from "../lib/envelope.js";
import { streamKeys } from "../lib/keys.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { loadDispatcherConfig } from "./config.js";
import { type AttemptInfo, type Dispatcher, startDispatcher } from "./dispatcher.js";

const logger = createLogger("dispatcher", { level: "silent" });

let redisServer: TestRedisServer;
let redis: Redis;
let sink: RecordingServer;

before(async () => {
  redisServer = await startRedisServer();
  redis = connectRedis(parseRedisAddress(redisServer.address), { name: "test" });
  sink = await startRecordingServer();
});

after(async () => {
  await sink.close();
  redis.disconnect();
  await redisServer.cleanup();
});

function envelope(
  id: string,
  more: { method?: string; body?: Buffer; policy?: object; headers?: object } = {},
): string {
  return encodeEnvelope({
    id,
    url: `http://app.default.svc.cluster.local/things/${id}?x=1`,
    method: more.method ?? "GET",
    headers: { "Content-Type": ["application/octet-stream"], ...(more.headers ?? {}) },
    body: more.body ?? Buffer.from(`body of ${id}`),
    acceptedAt: Date.now(),
    ...(more.policy ? { policy: more.policy } : {}),
  });
}

function start(
  stream: string,
  env: Record<string, string> = {},
  hooks: { onAttempt?: (i: AttemptInfo) => void } = {},
) {
  const config = loadDispatcherConfig({
    REDIS_ADDRESS: redisServer.address,
    REDIS_STREAM_NAME: stream,
    K_SINK: sink.url,
    PORT: "0",
    MIN_BACKOFF: "50ms",
    MAX_BACKOFF: "200ms",
    CLAIM_IDLE: "2s",
    DISPATCHER_NAME: `d-${randomUUID().slice(0, 8)}`,
    ...env,
  });
  return startDispatcher(config, { logger, ...hooks });
}

/** Events the sink received for one stream, decoded with the official CloudEvents SDK. */
function eventsFor(stream: string) {
  return sink.received
    .flatMap((r) => HTTP.toEvent({ headers: r.headers as Record<string, string>, body: r.body.toString() }))
    .filter((e) => String(e.source).endsWith(`/${stream}`));
}

describe("dispatcher (CloudEvent mode, real Redis)", () => {
  test("entries written while no dispatcher ran are delivered when one starts, as eventing-redis events", async () => {
    const stream = `s-${randomUUID()}`;
    const ids = Array.from({ length: 20 }, (_, i) => `req-${i}`);
    for (const id of ids) await redis.xadd(stream, "*", "data", envelope(id));
    sink.respond = () => ({ status: 200 });
    const dispatcher = await start(stream);
    try {
      await waitFor(() => eventsFor(stream).length >= ids.length, { what: "all events" });
      const events = eventsFor(stream);
      assert.equal(events.length, ids.length);
      for (const event of events) {
        assert.equal(event.type, "dev.knative.sources.redisstream");
        assert.equal(event.specversion, "1.0");
        assert.match(event.id, /^\d+-\d+$/);
        const data = event.data as string[];
        assert.ok(Array.isArray(data), "data is the entry's field list");
        assert.equal(data[0], "data");
        const decoded = JSON.parse(data[1] as string);
        assert.equal(event.asyncrequestid, decoded.id);
      }
      assert.deepEqual(
        events.map((e) => JSON.parse((e.data as string[])[1] as string).id).sort(),
        [...ids].sort(),
      );
      // Acknowledged and deleted: nothing pending, nothing left in the stream.
      await waitFor(async () => (await redis.xlen(stream)) === 0, { what: "stream emptied" });
      const pending = (await redis.xpending(stream, "knative-async")) as [number];
      assert.equal(pending[0], 0);
    } finally {
      await dispatcher.close();
    }
  });

  test("an entry whose sink answered 500 is delivered again later; others are not held back", async () => {
    const stream = `s-${randomUUID()}`;
    let failuresLeft = 2;
    sink.respond = (r) => {
      const fields = JSON.parse(r.body.toString()) as string[];
      const id = JSON.parse(fieldValue(fields, "data") as string).id;
      if (id === "flaky" && failuresLeft > 0) {
        failuresLeft--;
        return { status: 500 };
      }
      return { status: 200 };
    };
    const attempts: AttemptInfo[] = [];
    const dispatcher = await start(stream, {}, { onAttempt: (i) => attempts.push(i) });
    try {
      await redis.xadd(stream, "*", "data", envelope("flaky"));
      for (let i = 0; i < 10; i++) await redis.xadd(stream, "*", "data", envelope(`steady-${i}`));
      await waitFor(() => attempts.filter((a) => a.decision.action === "ack").length === 11, {
        what: "11 delivered",
      });
      const flaky = attempts.filter((a) => a.requestId === "flaky");
      assert.deepEqual(
        flaky.map((a) => [a.attempt, a.decision.action]),
        [
          [1, "retry"],
          [2, "retry"],
          [3, "ack"],
        ],
      );
      // The steady ones did not wait for the flaky one's retries.
      const lastSteady = Math.max(
        ...attempts.filter((a) => a.requestId.startsWith("steady")).map((a) => attempts.indexOf(a)),
      );
      assert.ok(lastSteady < attempts.indexOf(flaky[2] as AttemptInfo));
      // The re-queued entry carries its delivery context.
      const thirdEvent = eventsFor(stream).filter((e) => e.asyncrequestid === "flaky")[2];
      const fields = thirdEvent?.data as string[];
      assert.equal(fieldValue(fields, "attempts"), "2");
      assert.equal(fieldValue(fields, "lastStatus"), "500");
      assert.equal(thirdEvent?.asyncattempt, "3");
    } finally {
      await dispatcher.close();
    }
  });

  test("a poisoned entry among good ones is dead-lettered once; the good ones are delivered", async () => {
    const stream = `s-${randomUUID()}`;
    sink.respond = () => ({ status: 200 });
    const attempts: AttemptInfo[] = [];
    for (let i = 0; i < 50; i++) await redis.xadd(stream, "*", "data", envelope(`good-${i}`));
    await redis.xadd(stream, "*", "data", "{not json");
    await redis.xadd(stream, "*", "other", "no data field");
    for (let i = 50; i < 100; i++) await redis.xadd(stream, "*", "data", envelope(`good-${i}`));
    const dispatcher = await start(stream, {}, { onAttempt: (i) => attempts.push(i) });
    const keys = streamKeys(stream);
    try {
      await waitFor(async () => attempts.length >= 100 && (await redis.xlen(keys.deadLetter)) === 2, {
        what: "100 delivered and 2 dead-lettered",
      });
      assert.equal(new Set(attempts.map((a) => a.requestId)).size, 100);
      const dead = (await redis.xrange(keys.deadLetter, "-", "+")) as [string, string[]][];
      assert.deepEqual(
        dead.map(([, f]) => fieldValue(f, "reason")),
        ["malformed", "malformed"],
      );
      assert.equal(fieldValue(dead[0]?.[1] ?? [], "data"), "{not json");
      assert.match(fieldValue(dead[0]?.[1] ?? [], "lastError") ?? "", /MALFORMED/);
      assert.equal(await redis.xlen(stream), 0);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await redis.xlen(keys.deadLetter), 2, "nothing loops");
      const metrics = await (await fetch(`http://127.0.0.1:${dispatcher.port}/metrics`)).text();
      assert.match(
        metrics,
        /knative_async_dispatcher_attempts_total\{result="dead-letter",reason="malformed"[^}]*\} 2\n/,
        "poisoned entries are counted as dead-lettered attempts",
      );
    } finally {
      await dispatcher.close();
    }
  });

  test("Retry-After is honoured and the max attempts end in the dead-letter stream with context", async () => {
    const stream = `s-${randomUUID()}`;
    sink.respond = () => ({ status: 502, headers: { "async-target-status": "503", "retry-after": "1" } });
    const attempts: AttemptInfo[] = [];
    const dispatcher = await start(stream, { MAX_ATTEMPTS: "3" }, { onAttempt: (i) => attempts.push(i) });
    const keys = streamKeys(stream);
    try {
      await redis.xadd(stream, "*", "data", envelope("always-503"));
      await waitFor(async () => (await redis.xlen(keys.deadLetter)) === 1, {
        timeoutMs: 15_000,
        what: "dead letter",
      });
      assert.equal(attempts.length, 3);
      const [[, fields]] = (await redis.xrange(keys.deadLetter, "-", "+")) as [[string, string[]]];
      assert.equal(fieldValue(fields, "reason"), "max-attempts");
      assert.equal(fieldValue(fields, "attempts"), "3");
      assert.equal(fieldValue(fields, "lastStatus"), "503");
      const first = Number(fieldValue(fields, "firstAttemptAt"));
      const last = Number(fieldValue(fields, "lastAttemptAt"));
      assert.ok(
        last - first >= 2000,
        `two Retry-After: 1 waits between first and last attempt (${last - first} ms)`,
      );
      assert.equal(await redis.zcard(keys.retrySchedule), 0);
      assert.equal(await redis.xlen(stream), 0);
    } finally {
      await dispatcher.close();
    }
  });

  test("per-request policy from the envelope applies (max attempts 1)", async () => {
    const stream = `s-${randomUUID()}`;
    sink.respond = () => ({ status: 500 });
    const dispatcher = await start(stream);
    const keys = streamKeys(stream);
    try {
      await redis.xadd(stream, "*", "data", envelope("once", { policy: { maxAttempts: 1 } }));
      await waitFor(async () => (await redis.xlen(keys.deadLetter)) === 1, { what: "dead letter" });
      const [[, fields]] = (await redis.xrange(keys.deadLetter, "-", "+")) as [[string, string[]]];
      assert.equal(fieldValue(fields, "reason"), "max-attempts");
      assert.equal(fieldValue(fields, "attempts"), "1");
    } finally {
      await dispatcher.close();
    }
  });

  test("entries pending on a dispatcher that died are taken over after CLAIM_IDLE", async () => {
    const stream = `s-${randomUUID()}`;
    sink.respond = () => ({ status: 200 });
    // A "dead" dispatcher: read two entries into its pending list and never finish them.
    await redis.xgroup("CREATE", stream, "knative-async", "0", "MKSTREAM");
    await redis.xadd(stream, "*", "data", envelope("orphan-1"));
    await redis.xadd(stream, "*", "data", envelope("orphan-2"));
    await redis.xreadgroup("GROUP", "knative-async", "dead-one", "COUNT", 10, "STREAMS", stream, ">");
    const attempts: AttemptInfo[] = [];
    const dispatcher = await start(stream, { CLAIM_IDLE: "1s" }, { onAttempt: (i) => attempts.push(i) });
    try {
      await waitFor(() => attempts.length === 2, { timeoutMs: 10_000, what: "orphans delivered" });
      assert.deepEqual(attempts.map((a) => a.requestId).sort(), ["orphan-1", "orphan-2"]);
      // The crashed delivery counts as an attempt.
      assert.deepEqual(
        attempts.map((a) => a.attempt),
        [2, 2],
      );
      await waitFor(async () => (await redis.xlen(stream)) === 0, { what: "acknowledged" });
    } finally {
      await dispatcher.close();
    }
  });

  test("a slow delivery keeps its claim: a second dispatcher does not deliver it in parallel", async () => {
    const stream = `s-${randomUUID()}`;
    sink.respond = async () => {
      await new Promise((r) => setTimeout(r, 3000));
      return { status: 200 };
    };
    const attempts: AttemptInfo[] = [];
    const first = await start(stream, { CLAIM_IDLE: "1s" }, { onAttempt: (i) => attempts.push(i) });
    await redis.xadd(stream, "*", "data", envelope("slow"));
    await waitFor(() => first.inFlight() === 1, { what: "in flight" });
    const second = await start(stream, { CLAIM_IDLE: "1s" }, { onAttempt: (i) => attempts.push(i) });
    try {
      await waitFor(() => attempts.length === 1, { timeoutMs: 10_000, what: "delivered" });
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(attempts.length, 1);
      assert.equal(eventsFor(stream).length, 1, "the sink saw it once");
      assert.equal(attempts[0]?.applied, true);
    } finally {
      await Promise.all([first.close(), second.close()]);
      sink.respond = () => ({ status: 200 });
    }
  });

  test("close() waits for in-flight deliveries and acknowledges them", async () => {
    const stream = `s-${randomUUID()}`;
    sink.respond = async () => {
      await new Promise((r) => setTimeout(r, 500));
      return { status: 200 };
    };
    const attempts: AttemptInfo[] = [];
    const dispatcher: Dispatcher = await start(stream, {}, { onAttempt: (i) => attempts.push(i) });
    for (let i = 0; i < 5; i++) await redis.xadd(stream, "*", "data", envelope(`inflight-${i}`));
    await waitFor(() => dispatcher.inFlight() === 5, { what: "5 in flight" });
    await dispatcher.close();
    assert.equal(attempts.length, 5);
    assert.equal(await redis.xlen(stream), 0);
    sink.respond = () => ({ status: 200 });
  });

  test("deliveries that finish together are acknowledged together, each still checked and deleted", async () => {
    const stream = `s-${randomUUID()}`;
    sink.respond = () => ({ status: 200 });
    const ids = Array.from({ length: 300 }, (_, i) => `together-${i}`);
    for (const id of ids) await redis.xadd(stream, "*", "data", envelope(id));
    const attempts: AttemptInfo[] = [];
    await redis.config("RESETSTAT");
    const dispatcher = await start(stream, {}, { onAttempt: (i) => attempts.push(i) });
    try {
      await waitFor(() => attempts.length === ids.length, { what: "all delivered" });
      assert.ok(attempts.every((a) => a.decision.action === "ack" && a.applied));
      assert.equal(await redis.xlen(stream), 0);
      assert.equal(((await redis.xpending(stream, "knative-async")) as [number])[0], 0);
      const stats = (await redis.info("commandstats")) as string;
      const calls = (name: string) =>
        Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
      // Every entry was acknowledged and deleted on its own...
      assert.equal(calls("xack"), calls("xdel"));
      assert.ok(calls("xpending") >= ids.length);
      // ...but in far fewer script calls than entries (one each before batching).
      assert.ok(
        calls("evalsha") < ids.length / 3,
        `${calls("evalsha")} script calls for ${ids.length} entries`,
      );
    } finally {
      await dispatcher.close();
    }
  });

  test("with nearly every slot busy, a new entry is still read and delivered at once", async () => {
    const stream = `s-${randomUUID()}`;
    const release: (() => void)[] = [];
    sink.respond = async (r) => {
      const fields = JSON.parse(r.body.toString()) as string[];
      const id = JSON.parse(fieldValue(fields, "data") as string).id as string;
      if (id.startsWith("stuck")) await new Promise<void>((resolve) => release.push(resolve));
      return { status: 200 };
    };
    const attempts: AttemptInfo[] = [];
    // 8 slots: reads wait for 2 free ones, but only briefly.
    const dispatcher = await start(
      stream,
      { DISPATCH_CONCURRENCY: "8" },
      { onAttempt: (i) => attempts.push(i) },
    );
    try {
      for (let i = 0; i < 7; i++) await redis.xadd(stream, "*", "data", envelope(`stuck-${i}`));
      await waitFor(() => dispatcher.inFlight() === 7, { what: "7 in flight" });
      await redis.xadd(stream, "*", "data", envelope("quick"));
      await waitFor(() => attempts.some((a) => a.requestId === "quick"), {
        timeoutMs: 3000,
        what: "the new entry delivered beside the stuck ones",
      });
      assert.equal(dispatcher.inFlight(), 7);
    } finally {
      for (const r of release) r();
      await dispatcher.close();
      sink.respond = () => ({ status: 200 });
    }
  });

  test("/healthz, /readyz and /metrics", async () => {
    const stream = `s-${randomUUID()}`;
    const dispatcher = await start(stream);
    try {
      const base = `http://127.0.0.1:${dispatcher.port}`;
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { what: "ready" });
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /knative_async_queue_entries\{place="stream"/);
      assert.match(metrics, /knative_async_dispatcher_in_flight/);
      assert.equal((await fetch(`${base}/other`)).status, 404);
    } finally {
      await dispatcher.close();
    }
  });
});

describe("dispatcher config", () => {
  test("K_SINK is required in cloudevent mode, with a readable message", () => {
    assert.throws(() => loadDispatcherConfig({}), /K_SINK is required/);
    assert.throws(() => loadDispatcherConfig({ K_SINK: "not a url" }), /K_SINK: must be an absolute/);
    assert.throws(
      () => loadDispatcherConfig({ DISPATCH_MODE: "direct", MAX_ATTEMPTS: "zero" }),
      /MAX_ATTEMPTS/,
    );
    assert.throws(
      () => loadDispatcherConfig({ DISPATCH_MODE: "direct", MIN_BACKOFF: "10s", MAX_BACKOFF: "1s" }),
      /MIN_BACKOFF/,
    );
    const config = loadDispatcherConfig({ DISPATCH_MODE: "direct", RETRYABLE_STATUS_CODES: "500, 503" });
    assert.deepEqual(config.retry.retryableStatuses, [500, 503]);
    assert.equal(config.retry.maxAttempts, 10);
  });
});

describe("dispatcher shutdown when Redis is gone", () => {
  test("close() returns although Redis stopped before it was called", { timeout: 20_000 }, async () => {
    // Its own Redis: the shared one must outlive this test.
    const own = await startRedisServer();
    try {
      const config = loadDispatcherConfig({
        REDIS_ADDRESS: own.address,
        REDIS_STREAM_NAME: `s-${randomUUID()}`,
        K_SINK: sink.url,
        PORT: "0",
        CLAIM_IDLE: "1s",
        DISPATCHER_NAME: `d-${randomUUID().slice(0, 8)}`,
      });
      const dispatcher = await startDispatcher(config, { logger });
      const base = `http://127.0.0.1:${dispatcher.port}`;
      await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, { what: "ready" });
      await own.stop();
      // Let the blocking read, the recovery and the promoter loops run into the dead connection.
      await new Promise((r) => setTimeout(r, 1500));
      const started = Date.now();
      const closed = await Promise.race([
        dispatcher.close().then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 10_000)),
      ]);
      assert.equal(closed, true, "close() finished within 10 s");
      assert.ok(Date.now() - started < 6000, `close() took ${Date.now() - started} ms`);
    } finally {
      await own.cleanup();
    }
  });
});
