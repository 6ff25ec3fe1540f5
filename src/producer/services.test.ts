/**
 * The producer takes requests only for the async services the controller published (or hosts of the
 * allow-list), with their policy from the registry and never from a header the client sent.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { type AsyncRequest, decodeEnvelope } from "../lib/envelope.js";
import { streamKeys } from "../lib/keys.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { AsyncServicesWriter } from "../lib/registry.js";
import { loadProducerConfig } from "./config.js";
import { type RunningProducer, startProducer } from "./producer.js";

const REGISTERED = "hello.default.svc.cluster.local";
const UNREGISTERED = "other.default.svc.cluster.local";
const ALLOWED = "localhost:9999";
const POLICY = { maxAttempts: 3, minBackoffMs: 500 };
/** What a client would like: far above what any operator meant to give it. */
const GREEDY = "max-attempts=1000; max-age=30d; timeout=15m";

interface Reply {
  readonly status: number;
  readonly json: { id?: string; error?: string; message?: string };
}

async function send(port: number, host: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(`http://127.0.0.1:${port}/work?x=1`, {
    method: "POST",
    headers: { "async-original-host": host, ...headers },
    body: "payload",
  });
  return { status: res.status, json: (await res.json()) as Reply["json"] };
}

async function startWith(
  redis: TestRedisServer,
  stream: string,
  env: Record<string, string> = {},
): Promise<RunningProducer> {
  return startProducer(
    loadProducerConfig({
      PORT: "0",
      REDIS_ADDRESS: redis.address,
      REDIS_STREAM_NAME: stream,
      REDIS_TIMEOUT: "300ms",
      ALLOWED_TARGET_HOSTS: ALLOWED,
      ...env,
    }),
    { logger: createLogger("producer", { level: "silent" }) },
  );
}

async function readyz(port: number): Promise<{ status: number; body: { reason?: string } }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: (await res.json()) as { reason?: string } };
}

describe("producer and the async services registry", () => {
  let server: TestRedisServer;
  let client: Redis;

  before(async () => {
    server = await startRedisServer();
    client = connectRedis(parseRedisAddress(server.address), { name: "services-test" });
  });
  after(async () => {
    client?.disconnect();
    await server?.cleanup();
  });

  async function stored(stream: string, id: string | undefined): Promise<AsyncRequest> {
    for (const [, fields] of await client.xrange(stream, "-", "+")) {
      const request = decodeEnvelope(fields[1] as string);
      if (request.id === id) return request;
    }
    throw new Error(`no stream entry for ${id}`);
  }

  describe("with one registered service", () => {
    const stream = `services-${randomUUID()}`;
    let producer: RunningProducer;
    let writer: AsyncServicesWriter;

    before(async () => {
      writer = new AsyncServicesWriter(client, streamKeys(stream));
      await writer.publish("default/hello", { hosts: [REGISTERED], policy: POLICY });
      producer = await startWith(server, stream);
    });
    after(() => producer?.close());

    test("a cluster-local service that is not registered is refused with 403, nothing stored", async () => {
      const reply = await send(producer.port, UNREGISTERED);
      assert.equal(reply.status, 403);
      assert.equal(reply.json.error, "ASYNC_ERR_FORBIDDEN_TARGET");
      assert.match(reply.json.message ?? "", /other\.default\.svc\.cluster\.local is not an async service/);
      assert.equal(await client.xlen(stream), 0);
    });

    test("a registered service is accepted with the registry's policy; a client-sent policy is neither used nor stored", async () => {
      const reply = await send(producer.port, REGISTERED, { "async-delivery-policy": GREEDY });
      assert.equal(reply.status, 202);
      const request = await stored(stream, reply.json.id);
      assert.deepEqual(request.policy, POLICY);
      assert.equal(request.headers["Async-Delivery-Policy"], undefined);
      assert.equal(request.url, `http://${REGISTERED}/work?x=1`);
    });

    test("the short cluster-local name and a service port name the same registered service", async () => {
      for (const host of ["hello.default.svc", "HELLO.default.svc.cluster.local:80"]) {
        const reply = await send(producer.port, host);
        assert.equal(reply.status, 202, host);
        assert.deepEqual((await stored(stream, reply.json.id)).policy, POLICY);
      }
    });

    test("an allow-listed host is accepted without registration, with no policy, whatever the client sends", async () => {
      const reply = await send(producer.port, ALLOWED, { "async-delivery-policy": GREEDY });
      assert.equal(reply.status, 202);
      const request = await stored(stream, reply.json.id);
      assert.equal(request.policy, undefined);
      assert.equal(request.headers["Async-Delivery-Policy"], undefined);
    });

    test("a change in the registry reaches the running producer within a second", async () => {
      await writer.publish("default/other", { hosts: [UNREGISTERED], policy: { maxAttempts: 7 } });
      let started = Date.now();
      await waitFor(async () => (await send(producer.port, UNREGISTERED)).status === 202, {
        what: "the new service accepted",
        timeoutMs: 1000,
      });
      assert.ok(Date.now() - started <= 1000);

      await writer.publish("default/other", { hosts: [UNREGISTERED], policy: { maxAttempts: 2 } });
      started = Date.now();
      await waitFor(
        async () => {
          const reply = await send(producer.port, UNREGISTERED);
          return (await stored(stream, reply.json.id)).policy?.maxAttempts === 2;
        },
        { what: "the new policy applied", timeoutMs: 1000 },
      );

      await writer.remove("default/other");
      await waitFor(async () => (await send(producer.port, UNREGISTERED)).status === 403, {
        what: "the removed service refused",
        timeoutMs: 1000,
      });
    });
  });

  test("REQUIRE_REGISTERED_TARGETS=false: any cluster-local service, still never the client's policy", async () => {
    const stream = `services-${randomUUID()}`;
    const producer = await startWith(server, stream, { REQUIRE_REGISTERED_TARGETS: "false" });
    try {
      const reply = await send(producer.port, UNREGISTERED, { "async-delivery-policy": GREEDY });
      assert.equal(reply.status, 202);
      const request = await stored(stream, reply.json.id);
      assert.equal(request.policy, undefined);
      assert.equal(request.headers["Async-Delivery-Policy"], undefined);
      assert.equal(
        (await send(producer.port, "kubernetes.default.svc")).status,
        403,
        "the target rule holds",
      );
    } finally {
      await producer.close();
    }
  });

  test("while the registry cannot be read the producer is not ready and says why; it recovers by itself", async () => {
    const stream = `services-${randomUUID()}`;
    const keys = streamKeys(stream);
    // A key of the wrong type: Redis answers, the registry cannot be read.
    await client.set(keys.services, "not a hash");
    const producer = await startWith(server, stream);
    try {
      const ready = await readyz(producer.port);
      assert.equal(ready.status, 503);
      assert.match(ready.body.reason ?? "", /async services registry/);
      const refused = await send(producer.port, REGISTERED);
      assert.equal(refused.status, 503, "not known yet: refused for now, not forbidden");
      assert.equal(refused.json.error, "ASYNC_ERR_STORE_UNAVAILABLE");
      assert.equal((await send(producer.port, ALLOWED)).status, 202, "the allow-list needs no registry");

      await client.del(keys.services);
      await new AsyncServicesWriter(client, keys).publish("default/hello", {
        hosts: [REGISTERED],
        policy: {},
      });
      await waitFor(async () => (await readyz(producer.port)).status === 200, {
        what: "ready once the registry is read",
        timeoutMs: 3000,
      });
      assert.equal((await send(producer.port, REGISTERED)).status, 202);
    } finally {
      await producer.close();
    }
  });

  test("started while Redis is away: not ready until Redis is back and the registry is read", async () => {
    const redis = await startRedisServer();
    const stream = `services-${randomUUID()}`;
    await redis.stop();
    const producer = await startWith(redis, stream);
    try {
      const ready = await readyz(producer.port);
      assert.equal(ready.status, 503);
      await redis.start();
      const writer = connectRedis(parseRedisAddress(redis.address), { name: "services-test-2" });
      try {
        await new AsyncServicesWriter(writer, streamKeys(stream)).publish("default/hello", {
          hosts: [REGISTERED],
          policy: POLICY,
        });
      } finally {
        writer.disconnect();
      }
      await waitFor(async () => (await readyz(producer.port)).status === 200, {
        what: "ready after Redis came back",
        timeoutMs: 5000,
      });
      assert.equal((await send(producer.port, REGISTERED)).status, 202);
    } finally {
      await producer.close();
      await redis.cleanup();
    }
  });
});
