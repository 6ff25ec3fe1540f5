/**
 * A dispatcher started for the first time on a full Redis (maxmemory reached, policy noeviction): XGROUP
 * CREATE answers OOM, so there is no consumer group to read the backlog with. The dispatcher keeps
 * trying, says why in its readiness and (sparingly) in its log, and drains the backlog as soon as Redis
 * has room again.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { PassThrough } from "node:stream";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { type RecordingServer, startRecordingServer } from "../../test/helpers/http.js";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { encodeEnvelope } from "../lib/envelope.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { loadDispatcherConfig } from "./config.js";
import { startDispatcher } from "./dispatcher.js";

let redisServer: TestRedisServer;
let redis: Redis;
let sink: RecordingServer;

before(async () => {
  // Its own Redis: it is made full.
  redisServer = await startRedisServer();
  redis = connectRedis(parseRedisAddress(redisServer.address), { name: "test" });
  sink = await startRecordingServer();
});

after(async () => {
  await sink.close();
  redis.disconnect();
  await redisServer.cleanup();
});

test("on a full Redis the dispatcher is not ready and says why, then drains once Redis has room", {
  timeout: 30_000,
}, async () => {
  const stream = `s-${randomUUID()}`;
  const backlog = 50;
  for (let i = 0; i < backlog; i++) {
    const data = encodeEnvelope({
      id: `backlog-${i}`,
      url: "http://app.default.svc.cluster.local/work",
      method: "PUT",
      headers: {},
      body: Buffer.alloc(1000, i),
      acceptedAt: Date.now(),
    });
    await redis.xadd(stream, "*", "data", data);
  }
  // Full: any memory limit below what is used, and writes refused rather than keys evicted.
  await redis.config("SET", "maxmemory-policy", "noeviction");
  await redis.config("SET", "maxmemory", "1mb");
  await assert.rejects(redis.xgroup("CREATE", stream, "probe", "0"), /OOM/);

  const logs = new PassThrough();
  let logText = "";
  logs.on("data", (chunk) => {
    logText += chunk;
  });
  sink.respond = () => ({ status: 200 });
  const config = loadDispatcherConfig({
    REDIS_ADDRESS: redisServer.address,
    REDIS_STREAM_NAME: stream,
    K_SINK: sink.url,
    PORT: "0",
    DISPATCHER_NAME: `d-${randomUUID().slice(0, 8)}`,
  });
  const dispatcher = await startDispatcher(config, {
    logger: createLogger("dispatcher", { destination: logs }),
  });
  try {
    const readyz = async () => {
      const res = await fetch(`http://127.0.0.1:${dispatcher.port}/readyz`);
      return { status: res.status, body: (await res.json()) as { ready?: boolean; reason?: string } };
    };
    await waitFor(async () => (await readyz()).body.reason !== undefined, { what: "a reason at /readyz" });
    const notReady = await readyz();
    assert.equal(notReady.status, 503);
    assert.equal(notReady.body.ready, false);
    assert.match(notReady.body.reason ?? "", /^consumer group not created: OOM /);
    // Tried again with a backoff, and warned about once while it lasts (not once per try).
    await new Promise((r) => setTimeout(r, 3000));
    const warnings = logText
      .split("\n")
      .filter((line) => line.includes('"level":"warn"') && line.includes("consumer group"));
    assert.equal(warnings.length, 1, logText);
    assert.match(warnings[0] as string, /OOM command not allowed/);
    assert.equal(sink.received.length, 0);

    await redis.config("SET", "maxmemory", "0");
    await waitFor(() => sink.received.length >= backlog, { what: "the backlog drained" });
    await waitFor(async () => (await redis.xlen(stream)) === 0, { what: "the stream emptied" });
    assert.equal((await readyz()).status, 200);
    assert.match(logText, /created consumer group/);
  } finally {
    await dispatcher.close();
  }
});
