/**
 * The dispatcher with entries of hundreds of KB, against a real Redis and a real sink: it holds no
 * more bytes of entries than DISPATCH_BYTES_IN_FLIGHT (one larger entry going alone), and a large entry
 * read as Buffers goes through a retry and a dead letter with every byte as stored.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { type RecordingServer, startRecordingServer } from "../../test/helpers/http.js";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { LOOPBACK_TARGET_ENV } from "../../test/helpers/targets.js";
import { DATA_FIELD, fieldValue } from "../lib/entry.js";
import { decodeEnvelope, encodeEnvelopeBuffer } from "../lib/envelope.js";
import { streamKeys } from "../lib/keys.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { parseEvent } from "../lib/wire/cloudevent.js";
import { loadDispatcherConfig } from "./config.js";
import { startDispatcher } from "./dispatcher.js";

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

function start(stream: string, env: Record<string, string>) {
  const config = loadDispatcherConfig({
    REDIS_ADDRESS: redisServer.address,
    REDIS_STREAM_NAME: stream,
    K_SINK: sink.url,
    PORT: "0",
    MIN_BACKOFF: "50ms",
    MAX_BACKOFF: "50ms",
    DISPATCHER_NAME: `d-${randomUUID().slice(0, 8)}`,
    ...LOOPBACK_TARGET_ENV,
    ...env,
  });
  return startDispatcher(config, { logger });
}

/** A stored envelope of about `size` bytes: random bytes (base64) or text JSON must escape. */
function largeEnvelope(id: string, size: number, kind: "binary" | "text"): { data: Buffer; body: Buffer } {
  const body =
    kind === "binary" ? randomBytes(size) : Buffer.from(`"quoted" \\ é🚀\n`.repeat(Math.ceil(size / 20)));
  const data = encodeEnvelopeBuffer({ id, url: "http://127.0.0.1:9/x", method: "PUT", headers: {}, body });
  return { data, body };
}

/** The request in an event the sink received. */
function requestIn(received: RecordingServer["received"][number]) {
  const event = parseEvent(received.headers, received.body);
  assert.ok(event.ok, "a valid event");
  return event.request;
}

describe("dispatcher with large entries", () => {
  test("holds no more bytes of entries than DISPATCH_BYTES_IN_FLIGHT at once", async () => {
    const stream = `s-${randomUUID()}`;
    for (let i = 0; i < 10; i++) {
      await redis.xadd(stream, "*", DATA_FIELD, largeEnvelope(`big-${i}`, 200_000, "binary").data);
    }
    let now = 0;
    let most = 0;
    sink.respond = async () => {
      most = Math.max(most, ++now);
      await new Promise((resolve) => setTimeout(resolve, 100));
      now--;
      return { status: 200 };
    };
    // Entries of ~270 KB (base64): two fit in 600 KB; 100 slots would take all ten at once.
    const dispatcher = await start(stream, { DISPATCH_BYTES_IN_FLIGHT: "600000" });
    try {
      await waitFor(async () => (await redis.xlen(stream)) === 0, {
        timeoutMs: 15_000,
        what: "all delivered",
      });
      assert.equal(most, 2);
    } finally {
      await dispatcher.close();
    }
  });

  test("a large entry keeps every byte through a retry and a dead letter", async () => {
    const stream = `s-${randomUUID()}`;
    const keys = streamKeys(stream);
    for (const kind of ["binary", "text"] as const) {
      sink.received.length = 0;
      const { data, body } = largeEnvelope(`kept-${kind}`, 150_000, kind);
      await redis.xadd(stream, "*", DATA_FIELD, data, "other", 'é "extra" \u0001');
      sink.respond = () => ({ status: 500 });
      const dispatcher = await start(stream, { MAX_ATTEMPTS: "2" });
      try {
        await waitFor(async () => (await redis.xlen(keys.deadLetter)) === 1, {
          timeoutMs: 15_000,
          what: "dead-lettered after two attempts",
        });
      } finally {
        await dispatcher.close();
      }
      assert.equal(sink.received.length, 2);
      for (const received of sink.received) assert.deepEqual(requestIn(received).body, body, kind);
      const [[, fields]] = (await redis.xrangeBuffer(keys.deadLetter, "-", "+")) as [[Buffer, Buffer[]]];
      assert.ok(
        fieldValue(fields, DATA_FIELD)?.equals(data),
        "the dead letter's data is the stored envelope",
      );
      assert.equal(fieldValue(fields, "other")?.toString(), 'é "extra" \u0001');
      assert.deepEqual(decodeEnvelope(fieldValue(fields, DATA_FIELD) as Buffer).body, body);
      await redis.del(keys.deadLetter);
    }
  });
});
