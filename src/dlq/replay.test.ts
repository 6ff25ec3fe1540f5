/**
 * Replaying a dead letter with more fields than one XADD can take from Lua (written straight into the
 * dead-letter stream: the dispatcher bounds what it writes): the entry stays where it is and is reported,
 * and the others in the same call are replayed.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { streamKeys } from "../lib/keys.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { DeadLetters } from "./dlq.js";

let redisServer: TestRedisServer;
let redis: Redis;

before(async () => {
  redisServer = await startRedisServer();
  redis = connectRedis(parseRedisAddress(redisServer.address), { name: "test" });
});

after(async () => {
  redis.disconnect();
  await redisServer.cleanup();
});

test("a dead letter too long to replay stays and is reported; the others are replayed", async () => {
  const keys = streamKeys(`s-${randomUUID()}`);
  const extra = Array.from({ length: 5000 }, (_, i) => [`extra${i}`, "v"]).flat();
  const before = (await redis.xadd(keys.deadLetter, "*", "data", "first", "reason", "rejected")) as string;
  const huge = (await redis.xadd(keys.deadLetter, "*", "data", "huge", ...extra)) as string;
  const next = (await redis.xadd(keys.deadLetter, "*", "data", "after", "reason", "rejected")) as string;
  const dlq = new DeadLetters(redis, keys);
  assert.deepEqual(await dlq.replay([before, huge, next, "1-1"]), {
    replayed: 2,
    missing: ["1-1"],
    tooLong: [huge],
  });
  assert.equal(await redis.xlen(keys.stream), 2);
  assert.deepEqual(
    ((await redis.xrange(keys.deadLetter, "-", "+")) as [string, string[]][]).map(([id]) => id),
    [huge],
  );
  // --all ends although the entry stays.
  assert.equal(await dlq.replayAll(), 0);
});
