/**
 * The 503s of the durable write say exactly what the client can know: "not stored" only when the write
 * provably never took effect (never sent, or refused by Redis), "may have been stored" with the id it
 * would have whenever Redis may have applied it (no answer in time, or the connection broke while the
 * write was out). A TCP relay between the producer and Redis stands in for a Redis that dies after
 * applying a write and before answering it.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { request } from "node:http";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { decodeEnvelope } from "../lib/envelope.js";
import { ErrorCode } from "../lib/errors.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { loadProducerConfig } from "./config.js";
import { type RunningProducer, startProducer } from "./producer.js";

interface Reply {
  readonly status: number;
  readonly requestId: string | undefined;
  readonly json: { error?: string; message?: string; id?: string };
}

function post(port: number, body: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/store",
        agent: false,
        headers: { "async-original-host": "app.default.svc.cluster.local", ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            requestId: res.headers["async-request-id"] as string | undefined,
            json: JSON.parse(Buffer.concat(chunks).toString() || "{}"),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * Relays TCP to Redis. With `loseNextReply`, the next bytes Redis sends back are dropped and the
 * connection cut: the command was applied, its answer never arrives.
 */
async function startRelay(redisPort: number) {
  const sockets = new Set<Socket>();
  const state = { loseNextReply: false };
  const server: Server = createServer((client) => {
    const upstream = connect(redisPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (chunk: Buffer) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => {
      if (!state.loseNextReply) {
        client.write(chunk);
        return;
      }
      state.loseNextReply = false;
      client.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    state,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("what the producer's 503s say about the write", () => {
  let server: TestRedisServer;
  let relay: Awaited<ReturnType<typeof startRelay>>;
  let producer: RunningProducer;
  let redis: Redis;
  const stream = `store-${randomUUID()}`;

  before(async () => {
    server = await startRedisServer();
    relay = await startRelay(Number(server.address.split(":").at(-1)));
    producer = await startProducer(
      loadProducerConfig({
        PORT: "0",
        REDIS_ADDRESS: `127.0.0.1:${relay.port}`,
        REDIS_STREAM_NAME: stream,
        REDIS_TIMEOUT: "300ms",
        // These tests are about the write, not targets: the target is allowed without a registry entry.
        ALLOWED_TARGET_HOSTS: "app.default.svc.cluster.local",
      }),
      { logger: createLogger("producer", { level: "silent" }) },
    );
    redis = connectRedis(parseRedisAddress(server.address), { name: "store-test" });
  });

  after(async () => {
    await producer?.close();
    await relay?.close();
    redis?.disconnect();
    await server?.cleanup();
  });

  const storedIds = async () =>
    (await redis.xrange(stream, "-", "+")).map(([, fields]) => decodeEnvelope(fields[1] as string).id);
  const ready = () =>
    waitFor(async () => (await post(producer.port, "probe")).status === 202, { what: "a 202 again" });

  test("the connection breaks after Redis applied the write: 503 'may have been stored' with the id it has", async () => {
    relay.state.loseNextReply = true;
    const reply = await post(producer.port, "applied, answer lost");
    assert.equal(reply.status, 503);
    assert.equal(reply.json.error, ErrorCode.StoreUnconfirmed);
    assert.match(reply.json.message ?? "", /may have been stored/);
    assert.match(reply.json.message ?? "", /Idempotency-Key/);
    assert.ok(reply.requestId, "the id it is stored under, if it was");
    assert.ok((await storedIds()).includes(reply.requestId), "it was stored, under that id");
    await ready();
  });

  test("with an Idempotency-Key, the same 503 says to retry with it, and the retry gets the stored id", async () => {
    const key = randomUUID();
    relay.state.loseNextReply = true;
    const reply = await post(producer.port, "keyed", { "idempotency-key": key });
    assert.equal(reply.status, 503);
    assert.equal(reply.json.error, ErrorCode.StoreUnconfirmed);
    assert.match(reply.json.message ?? "", /retry with the same Idempotency-Key/);
    await ready();
    const retried = await post(producer.port, "keyed", { "idempotency-key": key });
    assert.equal(retried.status, 202);
    assert.equal(retried.json.id, reply.requestId);
  });

  test("Redis does not answer in time: 503 'may have been stored'; once Redis goes on, it is", async () => {
    await redis.call("CLIENT", "PAUSE", "800", "WRITE");
    const reply = await post(producer.port, "late");
    assert.equal(reply.status, 503);
    assert.equal(reply.json.error, ErrorCode.StoreUnconfirmed);
    assert.match(reply.json.message ?? "", /did not answer within \d+ms/);
    assert.match(reply.json.message ?? "", /may have been stored/);
    await waitFor(async () => (await storedIds()).includes(reply.requestId as string), {
      what: "the write applied after the pause",
    });
  });

  test("Redis refuses the write: 503 'not stored', and nothing is", async () => {
    await redis.config("SET", "maxmemory", "1");
    try {
      const before = (await storedIds()).length;
      const reply = await post(producer.port, "refused");
      assert.equal(reply.status, 503);
      assert.equal(reply.json.error, ErrorCode.StoreUnavailable);
      assert.match(reply.json.message ?? "", /not stored: Redis refused the write/);
      assert.equal(reply.requestId, undefined);
      assert.equal((await storedIds()).length, before);
    } finally {
      await redis.config("SET", "maxmemory", "0");
    }
  });

  test("Redis cannot be reached: 503 'not stored' at once", async () => {
    await relay.close();
    await waitFor(async () => (await post(producer.port, "down")).status === 503, { what: "a 503" });
    const reply = await post(producer.port, "down");
    assert.equal(reply.json.error, ErrorCode.StoreUnavailable);
    assert.match(reply.json.message ?? "", /not stored: Redis is unavailable/);
    assert.equal(reply.requestId, undefined);
  });
});
