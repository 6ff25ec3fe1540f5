/**
 * The scripts against a real Redis at sizes Lua's unpack() cannot take in one go (about 8000 values):
 * lists of ids are handed to XACK and XDEL in chunks, and a field list too long for one XADD is refused
 * with a clear error, changing nothing, rather than failing inside the script.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { ErrorCode } from "../lib/errors.js";
import { streamKeys } from "../lib/keys.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { DispatcherScripts } from "./scripts.js";

const GROUP = "knative-async";
const CONSUMER = "me";

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

/** A stream of `count` entries, all read by CONSUMER (pending on it), and the scripts for it. */
async function pendingEntries(
  count: number,
): Promise<{ stream: string; ids: string[]; scripts: DispatcherScripts }> {
  const stream = `s-${randomUUID()}`;
  await redis.xgroup("CREATE", stream, GROUP, "0", "MKSTREAM");
  const pipeline = redis.pipeline();
  for (let i = 0; i < count; i++) pipeline.xadd(stream, "*", "data", `d${i}`);
  await pipeline.exec();
  const read = (await redis.xreadgroup("GROUP", GROUP, CONSUMER, "COUNT", count, "STREAMS", stream, ">")) as [
    string,
    [string, string[]][],
  ][];
  const ids = (read[0]?.[1] ?? []).map(([id]) => id);
  assert.equal(ids.length, count);
  const scripts = new DispatcherScripts(redis, {
    keys: streamKeys(stream),
    group: GROUP,
    consumer: CONSUMER,
    deleteAcked: true,
  });
  return { stream, ids, scripts };
}

describe("the dispatcher's scripts at any size", () => {
  test("ackBatch acknowledges and deletes 9,000 entries in one call", async () => {
    const { stream, ids, scripts } = await pendingEntries(9000);
    const acked = await scripts.ackBatch(ids);
    assert.equal(acked.length, ids.length);
    assert.ok(acked.every((one) => one));
    assert.equal(((await redis.xpending(stream, GROUP)) as [number])[0], 0);
    assert.equal(await redis.xlen(stream), 0);
  });

  test("deadLetter refuses a field list too long for one XADD with a clear error, and changes nothing", async () => {
    const { stream, ids, scripts } = await pendingEntries(1);
    const id = ids[0] as string;
    const fields = Array.from({ length: 5000 }, (_, i) => [`f${i}`, "v"]).flat();
    await assert.rejects(scripts.deadLetter(id, fields), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCode.MalformedEvent);
      assert.match(err.message, /5000 fields/);
      return true;
    });
    assert.equal(((await redis.xpending(stream, GROUP)) as [number])[0], 1, "still pending");
    assert.equal(await redis.xlen(streamKeys(stream).deadLetter), 0);
    // A list within the limit goes through.
    assert.ok(await scripts.deadLetter(id, ["data", "x", ...fields.slice(0, 6000)]));
    assert.equal(await redis.xlen(streamKeys(stream).deadLetter), 1);
  });
});
