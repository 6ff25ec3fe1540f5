/**
 * Every CloudEvent the dispatcher sends (the stream event to K_SINK, the dead-letter event to
 * DEAD_LETTER_SINK) has a `source` that is a strict RFC 3986 URI, whatever form REDIS_ADDRESS takes:
 * strict receivers (the original consumer, on CloudEvents sdk-go) answer 500 to anything else, and then
 * every event would be dead-lettered.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { HTTP } from "cloudevents";
import type { Redis } from "ioredis";
import { loadDispatcherConfig } from "../src/dispatcher/config.js";
import { startDispatcher } from "../src/dispatcher/dispatcher.js";
import { encodeEnvelope } from "../src/lib/envelope.js";
import { createLogger } from "../src/lib/logger.js";
import { connectRedis, parseRedisAddress } from "../src/lib/redis.js";
import { type RecordingServer, startRecordingServer } from "./helpers/http.js";
import { waitFor } from "./helpers/net.js";
import { startRedisServer, type TestRedisServer } from "./helpers/redis-server.js";
import { isUri, isUriReference } from "./helpers/uri.js";

let redisServer: TestRedisServer;
let redis: Redis;
let sink: RecordingServer;
let deadLetterSink: RecordingServer;

before(async () => {
  redisServer = await startRedisServer();
  redis = connectRedis(parseRedisAddress(redisServer.address), { name: "test" });
  // The first delivery succeeds, every later one fails for good: one event of each kind per run.
  sink = await startRecordingServer((received) =>
    received.headers["ce-asyncrequestid"] === "ok"
      ? { status: 200, headers: { "async-target-status": "200" } }
      : { status: 200, headers: { "async-target-status": "404" } },
  );
  deadLetterSink = await startRecordingServer();
});

after(async () => {
  await sink.close();
  await deadLetterSink.close();
  redis.disconnect();
  await redisServer.cleanup();
});

const forms = [
  { name: "plain host:port (the original's form)", address: () => redisServer.address },
  { name: "redis:// URL", address: () => `redis://127.0.0.1:${redisServer.port}` },
  { name: "localhost with database 0 spelled out", address: () => `redis://localhost:${redisServer.port}/0` },
];

for (const form of forms) {
  test(`every event has a strict URI source: ${form.name}, a stream name that needs encoding`, async () => {
    const stream = `my stream/ü:${randomUUID()}`;
    sink.received.length = 0;
    deadLetterSink.received.length = 0;
    const dispatcher = await startDispatcher(
      loadDispatcherConfig({
        REDIS_ADDRESS: form.address(),
        REDIS_STREAM_NAME: stream,
        K_SINK: sink.url,
        DEAD_LETTER_SINK: deadLetterSink.url,
        PORT: "0",
      }),
      { logger: createLogger("dispatcher", { level: "silent" }) },
    );
    try {
      for (const id of ["ok", "gone"]) {
        const body = Buffer.from(id);
        const url = "http://app.default.svc.cluster.local/x";
        await redis.xadd(stream, "*", "data", encodeEnvelope({ id, url, method: "GET", headers: {}, body }));
      }
      await waitFor(() => sink.received.length === 2 && deadLetterSink.received.length === 1, {
        what: "two stream events and one dead-letter event",
      });
      const events = [...sink.received, ...deadLetterSink.received];
      const host = form.address().includes("localhost") ? "localhost" : "127.0.0.1";
      const expected = `redis://${host}:${redisServer.port}/${encodeURIComponent(stream)}`;
      for (const received of events) {
        const source = String(received.headers["ce-source"]);
        assert.ok(isUriReference(source) && isUri(source), source);
        assert.equal(source, expected);
        const event = HTTP.toEvent({
          headers: received.headers as Record<string, string>,
          body: received.body,
        });
        assert.ok(!Array.isArray(event));
        assert.equal(event.source, expected);
      }
    } finally {
      await dispatcher.close();
    }
  });
}
