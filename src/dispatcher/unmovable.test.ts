/**
 * Entries the Lua moves cannot carry: thousands of fields (Lua passes at most ~8000 values to one
 * command), a retry-schedule member that is not a field list, a move that Redis refuses with a script
 * error. Each must end in the dead-letter stream, and never hold back the other entries or the retries
 * of other services.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
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
import { type AttemptInfo, startDispatcher } from "./dispatcher.js";

const logger = createLogger("dispatcher", { level: "silent" });
/** As many fields as the entry that wedged every retry (Lua's unpack stops near 8000 values). */
const MANY = 5000;

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

function envelope(id: string): string {
  return encodeEnvelope({
    id,
    url: `http://app.default.svc.cluster.local/things/${id}`,
    method: "PUT",
    headers: {},
    body: Buffer.from(`body of ${id}`),
    acceptedAt: Date.now(),
  });
}

/** `count` extra fields, as a foreign writer could add with XADD. */
function extraFields(count: number): string[] {
  return Array.from({ length: count }, (_, i) => [`extra${i}`, `value ${i}`]).flat();
}

/** The request id of a CloudEvent the sink received. */
function requestIdOf(body: Buffer): string {
  const fields = JSON.parse(body.toString()) as string[];
  return JSON.parse(fieldValue(fields, "data") as string).id as string;
}

function start(stream: string, onAttempt: (i: AttemptInfo) => void, env: Record<string, string> = {}) {
  const config = loadDispatcherConfig({
    REDIS_ADDRESS: redisServer.address,
    REDIS_STREAM_NAME: stream,
    K_SINK: sink.url,
    PORT: "0",
    MIN_BACKOFF: "50ms",
    MAX_BACKOFF: "100ms",
    CLAIM_IDLE: "2s",
    DISPATCHER_NAME: `d-${randomUUID().slice(0, 8)}`,
    ...env,
  });
  return startDispatcher(config, { logger, onAttempt });
}

async function deadLetters(stream: string): Promise<string[][]> {
  const entries = (await redis.xrange(streamKeys(stream).deadLetter, "-", "+")) as [string, string[]][];
  return entries.map(([, fields]) => fields);
}

describe("entries the Lua moves cannot carry as they are", () => {
  test("5,000-field entries among normal ones: the normal ones delivered, retries of others still promoted, the bad ones dead-lettered", {
    timeout: 30_000,
  }, async () => {
    const stream = `s-${randomUUID()}`;
    let flakyFailures = 0;
    sink.respond = (r) => {
      const id = requestIdOf(r.body);
      if (id === "huge") return { status: 500 };
      if (id.startsWith("flaky") && flakyFailures++ < 6) return { status: 500 };
      return { status: 200 };
    };
    const attempts: AttemptInfo[] = [];
    // A valid request with 5,000 fields more: its retry must be re-added to the stream, then dead-lettered.
    await redis.xadd(stream, "*", "data", envelope("huge"), ...extraFields(MANY));
    // No request at all in 5,000 fields: dead-lettered as malformed at once.
    await redis.xadd(stream, "*", ...extraFields(MANY));
    for (let i = 0; i < 10; i++) await redis.xadd(stream, "*", "data", envelope(`normal-${i}`));
    for (let i = 0; i < 3; i++) await redis.xadd(stream, "*", "data", envelope(`flaky-${i}`));
    const dispatcher = await start(stream, (i) => attempts.push(i), { MAX_ATTEMPTS: "3" });
    try {
      const delivered = () =>
        new Set(attempts.filter((a) => a.decision.action === "ack" && a.applied).map((a) => a.requestId));
      await waitFor(async () => delivered().size === 13 && (await deadLetters(stream)).length === 2, {
        timeoutMs: 20_000,
        what: "13 delivered (3 after retries) and 2 dead-lettered",
      });
      const dead = await deadLetters(stream);
      const huge = dead.find((f) => fieldValue(f, "data") !== undefined) as string[];
      assert.equal(JSON.parse(fieldValue(huge, "data") as string).id, "huge");
      assert.equal(fieldValue(huge, "reason"), "max-attempts");
      assert.equal(fieldValue(huge, "attempts"), "3");
      const droppedFromHuge = Number(fieldValue(huge, "droppedFields"));
      assert.ok(droppedFromHuge > MANY - 100, `${droppedFromHuge} extra fields dropped`);
      assert.ok(huge.length < 200, `the dead letter has ${huge.length / 2} fields`);
      const noData = dead.find((f) => f !== huge) as string[];
      assert.equal(fieldValue(noData, "reason"), "malformed");
      assert.ok(Number(fieldValue(noData, "droppedFields")) > MANY - 100);
      assert.equal(await redis.xlen(stream), 0);
      assert.equal(await redis.zcard(streamKeys(stream).retrySchedule), 0);
      assert.equal(((await redis.xpending(stream, "knative-async")) as [number])[0], 0, "nothing pending");
    } finally {
      await dispatcher.close();
      sink.respond = () => ({ status: 200 });
    }
  });

  test("retry-schedule members that cannot be re-added are dead-lettered; the others are promoted", {
    timeout: 20_000,
  }, async () => {
    const stream = `s-${randomUUID()}`;
    const keys = streamKeys(stream);
    sink.respond = () => ({ status: 200 });
    // Written straight into the schedule, all due: one too long to re-add, one not JSON, one not a
    // field list, and two good ones on either side of them.
    const members: [string, string][] = [
      ["1-1", JSON.stringify(["data", envelope("before")])],
      ["1-2", JSON.stringify(["data", envelope("too-long"), ...extraFields(MANY)])],
      ["1-3", "[not json"],
      ["1-4", JSON.stringify({ data: envelope("an object") })],
      ["1-5", JSON.stringify(["data", envelope("after"), "attempts", "1"])],
    ];
    for (const [member, value] of members) {
      await redis.hset(keys.retryEntries, member, value);
      await redis.zadd(keys.retrySchedule, 1, member);
    }
    const attempts: AttemptInfo[] = [];
    const dispatcher = await start(stream, (i) => attempts.push(i));
    try {
      await waitFor(async () => attempts.length === 2 && (await deadLetters(stream)).length === 3, {
        what: "2 promoted and delivered, 3 dead-lettered",
      });
      assert.deepEqual(attempts.map((a) => a.requestId).sort(), ["after", "before"]);
      const dead = await deadLetters(stream);
      assert.deepEqual(
        dead.map((f) => [fieldValue(f, "sourceEntryId"), fieldValue(f, "reason")]),
        [
          ["1-2", "malformed"],
          ["1-3", "malformed"],
          ["1-4", "malformed"],
        ],
      );
      const tooLong = dead[0] as string[];
      assert.equal(JSON.parse(fieldValue(tooLong, "data") as string).id, "too-long");
      assert.equal(fieldValue(tooLong, "droppedFields"), String(MANY));
      assert.match(fieldValue(tooLong, "lastError") ?? "", /too many fields/);
      // What could not be read as a field list is kept as it was, to be looked at.
      assert.equal(fieldValue(dead[1] as string[], "data"), "[not json");
      assert.equal(await redis.zcard(keys.retrySchedule), 0);
      assert.equal(await redis.hlen(keys.retryEntries), 0);
      // New retries keep being promoted afterwards.
      await redis.hset(keys.retryEntries, "1-6", JSON.stringify(["data", envelope("later")]));
      await redis.zadd(keys.retrySchedule, 1, "1-6");
      await waitFor(() => attempts.some((a) => a.requestId === "later"), { what: "a later retry" });
    } finally {
      await dispatcher.close();
    }
  });

  test("an entry whose move Redis refuses with a script error is dead-lettered as malformed, not left pending", {
    timeout: 20_000,
  }, async () => {
    const stream = `s-${randomUUID()}`;
    const keys = streamKeys(stream);
    // The retry entries are not a hash: every retry move fails with WRONGTYPE, whatever the entry.
    await redis.set(keys.retryEntries, "not a hash");
    sink.respond = () => ({ status: 503 });
    const attempts: AttemptInfo[] = [];
    const dispatcher = await start(stream, (i) => attempts.push(i));
    try {
      await redis.xadd(stream, "*", "data", envelope("unmovable"));
      await waitFor(async () => (await deadLetters(stream)).length === 1, {
        timeoutMs: 5000,
        what: "the entry dead-lettered",
      });
      const [fields] = (await deadLetters(stream)) as [string[]];
      assert.equal(fieldValue(fields, "reason"), "malformed");
      assert.match(fieldValue(fields, "lastError") ?? "", /WRONGTYPE/);
      assert.equal(JSON.parse(fieldValue(fields, "data") as string).id, "unmovable");
      assert.equal(await redis.xlen(stream), 0);
      assert.equal(((await redis.xpending(stream, "knative-async")) as [number])[0], 0, "nothing pending");
      assert.deepEqual(
        attempts.map((a) => [a.decision.action, a.applied]),
        [["dead-letter", true]],
      );
    } finally {
      await dispatcher.close();
      sink.respond = () => ({ status: 200 });
    }
  });
});
