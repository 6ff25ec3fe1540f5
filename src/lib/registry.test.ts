import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { streamKeys } from "./keys.js";
import { createLogger } from "./logger.js";
import { connectRedis, parseRedisAddress } from "./redis.js";
import { AsyncServicesReader, AsyncServicesWriter, decodeService, serviceHostKey } from "./registry.js";

test("a host is looked up without its port, case or cluster domain", () => {
  for (const host of [
    "hello.default.svc.cluster.local",
    "hello.default.svc",
    "Hello.Default.SVC:80",
    "hello.default.svc.cluster.local:443",
  ]) {
    assert.equal(serviceHostKey(host), "hello.default.svc", host);
  }
  assert.equal(serviceHostKey("127.0.0.1:8080"), "127.0.0.1");
  assert.equal(serviceHostKey("[::1]:8080"), "[::1]");
  assert.equal(serviceHostKey("cluster.local"), "cluster.local");
});

test("stored values that are not entries are refused, unknown policy items dropped", () => {
  for (const value of [null, "", "{", "[]", "null", '{"hosts":"a"}', '{"hosts":[1]}', '{"hosts":[""]}']) {
    assert.equal(decodeService(value), undefined, String(value));
  }
  assert.deepEqual(
    decodeService('{"hosts":["a.b.svc"],"policy":{"maxAttempts":2,"evil":1,"maxAgeMs":-5},"updatedAt":7}'),
    { hosts: ["a.b.svc"], policy: { maxAttempts: 2 }, updatedAt: 7 },
  );
});

describe("writer and reader against a real Redis", () => {
  let server: TestRedisServer;
  let redis: Redis;

  before(async () => {
    server = await startRedisServer();
    redis = connectRedis(parseRedisAddress(server.address), { name: "registry-test" });
  });
  after(async () => {
    redis.disconnect();
    await server.cleanup();
  });

  test("publish writes only what changed; remove and prune announce; a reader follows each at once", async () => {
    const keys = streamKeys(`r-${randomUUID()}`);
    const writer = new AsyncServicesWriter(redis, keys);
    const reader = new AsyncServicesReader({
      redis: parseRedisAddress(server.address),
      commands: redis,
      keys,
      name: "registry-test-reader",
      logger: createLogger("test", { level: "silent" }),
    });
    try {
      await reader.start();
      assert.equal(reader.loaded, true);
      assert.equal(reader.lookup("a.default.svc"), undefined);

      assert.equal(
        await writer.publish("default/a", { hosts: ["a.default.svc.cluster.local"], policy: {} }),
        true,
      );
      const first = (await writer.list()).get("default/a")?.updatedAt;
      assert.equal(
        await writer.publish("default/a", { hosts: ["a.default.svc.cluster.local"], policy: {} }),
        false,
      );
      assert.equal((await writer.list()).get("default/a")?.updatedAt, first, "unchanged: not written again");
      await waitFor(() => reader.lookup("a.default.svc:80") !== undefined, { what: "a", timeoutMs: 1000 });
      assert.deepEqual(reader.lookup("a.default.svc")?.policy, {});

      await writer.publish("default/a", {
        hosts: ["a.default.svc.cluster.local"],
        policy: { maxAttempts: 2 },
      });
      await writer.publish("default/b", { hosts: ["b.default.svc.cluster.local"], policy: {} });
      await waitFor(() => reader.policyOf("http://a.default.svc.cluster.local/x")?.maxAttempts === 2, {
        what: "a's new policy",
        timeoutMs: 1000,
      });
      assert.equal(reader.policyOf("not a url"), undefined);

      await writer.remove("default/a");
      await waitFor(() => reader.lookup("a.default.svc") === undefined, {
        what: "a removed",
        timeoutMs: 1000,
      });

      // A value written by hand is ignored by readers and writers alike, and pruned like any stale one.
      await redis.hset(keys.services, "default/junk", "not json");
      assert.deepEqual([...(await writer.list()).keys()], ["default/b"]);
      assert.deepEqual((await writer.prune((id) => id === "default/b")).sort(), ["default/junk"]);
      assert.deepEqual(await writer.prune(() => false), ["default/b"]);
      await waitFor(() => reader.lookup("b.default.svc") === undefined, {
        what: "b pruned",
        timeoutMs: 1000,
      });
      assert.equal(await redis.exists(keys.services), 0);
    } finally {
      reader.close();
    }
  });
});
