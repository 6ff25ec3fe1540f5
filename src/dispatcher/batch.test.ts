import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { defineScripts } from "../lib/scripts.js";
import { createBatcher } from "./batch.js";

type AckClient = Redis & {
  ackBatch(stream: string, group: string, consumer: string, del: string, ...ids: string[]): Promise<number[]>;
};

let redisServer: TestRedisServer;
let redis: AckClient;

before(async () => {
  redisServer = await startRedisServer();
  redis = connectRedis(parseRedisAddress(redisServer.address), { name: "test" }) as AckClient;
  defineScripts(redis, new URL("./lua/", import.meta.url), ["ack-batch-1.lua"]);
});

after(async () => {
  redis.disconnect();
  await redisServer.cleanup();
});

/** A stream with `n` entries read by consumer `me` (pending on it), and their ids. */
async function pendingOn(me: string, n: number): Promise<{ stream: string; ids: string[] }> {
  const stream = `s-${randomUUID()}`;
  await redis.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await redis.xadd(stream, "*", "data", `entry ${i}`)) as string);
  await redis.xreadgroup("GROUP", "g", me, "COUNT", n, "STREAMS", stream, ">");
  return { stream, ids };
}

describe("ack-batch-1.lua against Redis", () => {
  test("acknowledges and deletes every entry still pending on this consumer", async () => {
    const { stream, ids } = await pendingOn("me", 5);
    assert.deepEqual(await redis.ackBatch(stream, "g", "me", "1", ...ids), [1, 1, 1, 1, 1]);
    assert.equal(await redis.xlen(stream), 0);
    assert.equal(((await redis.xpending(stream, "g")) as [number])[0], 0);
  });

  test("leaves entries another consumer took over, and unknown ids, untouched", async () => {
    const { stream, ids } = await pendingOn("me", 4);
    // Another dispatcher took the second entry over.
    await redis.xclaim(stream, "g", "other", 0, ids[1] as string, "JUSTID");
    const acked = await redis.ackBatch(stream, "g", "me", "1", ...ids, "0-1");
    assert.deepEqual(acked, [1, 0, 1, 1, 0]);
    const left = (await redis.xrange(stream, "-", "+")) as [string, string[]][];
    assert.deepEqual(
      left.map(([id]) => id),
      [ids[1]],
    );
    const pending = (await redis.xpending(stream, "g", "-", "+", 10)) as [string, string][];
    assert.deepEqual(
      pending.map(([id, owner]) => [id, owner]),
      [[ids[1], "other"]],
    );
  });

  test("with deletion off the entries are acknowledged and stay in the stream", async () => {
    const { stream, ids } = await pendingOn("me", 3);
    assert.deepEqual(await redis.ackBatch(stream, "g", "me", "0", ...ids), [1, 1, 1]);
    assert.equal(await redis.xlen(stream), 3);
    assert.equal(((await redis.xpending(stream, "g")) as [number])[0], 0);
  });

  test("an id acknowledged twice in one call counts once", async () => {
    const { stream, ids } = await pendingOn("me", 1);
    const id = ids[0] as string;
    assert.deepEqual(await redis.ackBatch(stream, "g", "me", "1", id, id), [1, 0]);
    assert.equal(await redis.xlen(stream), 0);
  });

  test("takes a few hundred ids in one call", async () => {
    const { stream, ids } = await pendingOn("me", 300);
    const acked = await redis.ackBatch(stream, "g", "me", "1", ...ids);
    assert.equal(acked.length, 300);
    assert.ok(acked.every((a) => a === 1));
    assert.equal(await redis.xlen(stream), 0);
  });
});

describe("createBatcher", () => {
  test("requests made in one turn of the event loop go out as one call, results in order", async () => {
    const calls: number[][] = [];
    const double = createBatcher(async (items: number[]) => {
      calls.push(items);
      return items.map((n) => n * 2);
    }, 100);
    const results = await Promise.all([1, 2, 3].map((n) => double(n)));
    assert.deepEqual(results, [2, 4, 6]);
    assert.deepEqual(calls, [[1, 2, 3]]);
    assert.equal(await double(5), 10);
    assert.deepEqual(calls, [[1, 2, 3], [5]]);
  });

  test("while a call is out, requests gather for the next one", async () => {
    const calls: number[][] = [];
    let release: (() => void) | undefined;
    const slow = createBatcher(async (items: number[]) => {
      calls.push(items);
      if (calls.length === 1) await new Promise<void>((r) => (release = r));
      return items;
    }, 100);
    const first = slow(1);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(calls, [[1]]);
    const later = [slow(2), new Promise((r) => setTimeout(r, 20)).then(() => slow(3))];
    await new Promise((r) => setTimeout(r, 40));
    assert.deepEqual(calls, [[1]], "nothing more goes out while the first call is out");
    release?.();
    assert.deepEqual(await Promise.all([first, ...later]), [1, 2, 3]);
    assert.deepEqual(calls, [[1], [2, 3]]);
  });

  test("a full batch goes out at once; the rest follows in the next call", async () => {
    const calls: number[][] = [];
    const echo = createBatcher(async (items: number[]) => {
      calls.push(items);
      return items;
    }, 2);
    assert.deepEqual(await Promise.all([1, 2, 3, 4, 5].map((n) => echo(n))), [1, 2, 3, 4, 5]);
    assert.deepEqual(calls, [[1, 2], [3, 4], [5]]);
  });

  test("a failed call fails each of its requests; a wrong number of results too", async () => {
    const failing = createBatcher(async (_items: number[]): Promise<number[]> => {
      throw new Error("redis away");
    }, 10);
    const outcomes = await Promise.allSettled([failing(1), failing(2)]);
    assert.deepEqual(
      outcomes.map((o) => o.status === "rejected" && (o.reason as Error).message),
      ["redis away", "redis away"],
    );
    const short = createBatcher(async (items: number[]) => items.slice(1), 10);
    await assert.rejects(Promise.all([short(1), short(2)]), /batch of 2 returned 1 results/);
  });
});
