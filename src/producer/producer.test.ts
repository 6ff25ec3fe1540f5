import assert from "node:assert/strict";
import { isUtf8 } from "node:buffer";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { type IncomingHttpHeaders, type OutgoingHttpHeaders, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { freePort, waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { type AsyncRequest, decodeEnvelope } from "../lib/envelope.js";
import { ErrorCode } from "../lib/errors.js";
import { streamKeys } from "../lib/keys.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { AsyncServicesWriter } from "../lib/registry.js";
import { prefersRespondAsync } from "../lib/wire/prefer.js";
import { loadProducerConfig } from "./config.js";
import { type AcceptedInfo, type RunningProducer, startProducer } from "./producer.js";

const TARGET = "app.default.svc.cluster.local";
const LIMIT = 100_000;

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  readonly json: Record<string, unknown>;
}

interface SendOptions {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: OutgoingHttpHeaders;
  readonly body?: Buffer | string;
}

/** One request over a fresh connection, so a connection closed by a 413 never affects the next test. */
function send(port: number, options: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? "POST",
        path: options.path ?? "/",
        headers: options.headers ?? {},
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          let json: Record<string, unknown> = {};
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(options.body);
  });
}

const asyncHeaders = (extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => ({
  "async-original-host": TARGET,
  ...extra,
});

describe("producer against a real Redis", () => {
  let server: TestRedisServer;
  let producer: RunningProducer;
  let redis: Redis;
  const stream = `producer-${randomUUID()}`;
  const accepted: AcceptedInfo[] = [];
  const logLines: Record<string, unknown>[] = [];

  before(async () => {
    server = await startRedisServer();
    redis = connectRedis(parseRedisAddress(server.address), { name: "producer-test" });
    // What the controller publishes for the Knative Service `app`: the target is an async service.
    await new AsyncServicesWriter(redis, streamKeys(stream)).publish("default/app", {
      hosts: [TARGET],
      policy: { maxAttempts: 3, minBackoffMs: 500 },
    });
    const config = loadProducerConfig({
      PORT: "0",
      REDIS_ADDRESS: server.address,
      REDIS_STREAM_NAME: stream,
      REQUEST_SIZE_LIMIT: String(LIMIT),
      REDIS_TIMEOUT: "500ms",
      ALLOWED_TARGET_HOSTS: "localhost:9999,*.local.test",
    });
    const destination = new PassThrough();
    destination.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line) logLines.push(JSON.parse(line));
    });
    producer = await startProducer(config, {
      logger: createLogger("producer", { level: "info", destination }),
      onAccepted: (info) => accepted.push(info),
      selfHosts: ["self.local.test"],
    });
  });

  after(async () => {
    await producer?.close();
    redis?.disconnect();
    await server?.cleanup();
  });

  const entries = () => redis.xrange(stream, "-", "+");
  async function entryOf(
    id: string,
  ): Promise<{ fields: string[]; request: AsyncRequest; raw: Record<string, unknown> }> {
    for (const [, fields] of await entries()) {
      const data = fields[1] as string;
      const request = decodeEnvelope(data);
      if (request.id === id) return { fields, request, raw: JSON.parse(data) };
    }
    throw new Error(`no stream entry for ${id}`);
  }

  test("answers 202 with the id in a header and a small JSON body", async () => {
    const reply = await send(producer.port, { headers: asyncHeaders(), body: "hello" });
    assert.equal(reply.status, 202);
    assert.match(reply.headers["content-type"] ?? "", /^application\/json/);
    const id = reply.headers["async-request-id"];
    assert.match(String(id), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.deepEqual(reply.json, { id, status: "queued" });
    assert.equal(reply.headers["preference-applied"], undefined);
    assert.deepEqual(accepted.at(-1), { id, url: `http://${TARGET}/`, method: "POST", bytes: 5 });
  });

  test("the stream entry holds method, URL with query, all headers and a byte-exact binary body", async () => {
    let body = randomBytes(50_000);
    while (isUtf8(body)) body = randomBytes(50_000);
    const reply = await send(producer.port, {
      method: "PUT",
      path: "/api/items/7?x=1&y=two%20words",
      headers: asyncHeaders({
        host: "app.example.com",
        "content-type": "application/octet-stream",
        "x-multi": ["one", "two"],
        prefer: "respond-async",
      }),
      body,
    });
    assert.equal(reply.status, 202);
    const { fields, request, raw } = await entryOf(String(reply.json.id));
    assert.equal(fields[0], "data");
    assert.equal(fields.length, 2);
    assert.equal(request.method, "PUT");
    assert.equal(request.url, `http://${TARGET}/api/items/7?x=1&y=two%20words`);
    assert.ok(request.body.equals(body), "body differs");
    assert.equal(raw.bodyEncoding, "base64");
    assert.deepEqual(request.headers.Host, ["app.example.com"]);
    assert.deepEqual(request.headers["X-Multi"], ["one", "two"]);
    assert.deepEqual(request.headers["Content-Type"], ["application/octet-stream"]);
    assert.deepEqual(request.headers["Async-Original-Host"], [TARGET]);
    assert.deepEqual(request.headers.Prefer, ["respond-async"]);
    assert.ok(typeof request.acceptedAt === "number" && Math.abs(Date.now() - request.acceptedAt) < 10_000);
  });

  test("a UTF-8 body stays a plain string in the envelope", async () => {
    const text = '{"name":"Zoë","emoji":"✓🚀"}';
    const reply = await send(producer.port, { headers: asyncHeaders(), body: text });
    assert.equal(reply.status, 202);
    const { request, raw } = await entryOf(String(reply.json.id));
    assert.equal(raw.body, text);
    assert.equal(raw.bodyEncoding, undefined);
    assert.equal(request.body.toString("utf8"), text);
  });

  test("Preference-Applied only when the request asked for respond-async", async () => {
    const asked = await send(producer.port, { headers: asyncHeaders({ prefer: "wait=10, respond-async" }) });
    assert.equal(asked.headers["preference-applied"], "respond-async");
    const other = await send(producer.port, { headers: asyncHeaders({ prefer: "return=minimal" }) });
    assert.equal(other.status, 202);
    assert.equal(other.headers["preference-applied"], undefined);
  });

  test("prefersRespondAsync reads RFC 7240 preference lists", () => {
    assert.equal(prefersRespondAsync(["respond-async"]), true);
    assert.equal(prefersRespondAsync(["Respond-Async; foo=bar"]), true);
    assert.equal(prefersRespondAsync(["return=minimal", "wait=5,respond-async"]), true);
    assert.equal(prefersRespondAsync(['foo="a, respond-async"']), false);
    assert.equal(prefersRespondAsync(["respond-asyncx", "x=respond-async"]), false);
    assert.equal(prefersRespondAsync(undefined), false);
  });

  test("413 at once for a Content-Length over the limit, and the next request is served", {
    timeout: 10_000,
  }, async () => {
    const before = (await entries()).length;
    const reply = await new Promise<{ status: number; connection?: string; code: unknown }>(
      (resolve, reject) => {
        const req = request({
          host: "127.0.0.1",
          port: producer.port,
          method: "POST",
          path: "/",
          agent: false,
          headers: asyncHeaders({ "content-length": String(LIMIT * 100) }),
        });
        req.on("response", (res) => {
          let text = "";
          res.on("data", (c) => {
            text += c;
          });
          res.on("end", () => {
            resolve({
              status: res.statusCode ?? 0,
              connection: res.headers.connection,
              code: JSON.parse(text).error,
            });
            req.destroy();
          });
        });
        req.on("error", reject);
        // Headers only: the answer must come without any of the body being sent.
        req.flushHeaders();
      },
    );
    assert.deepEqual(reply, { status: 413, connection: "close", code: ErrorCode.BodyTooLarge });
    assert.equal((await entries()).length, before);
    assert.equal((await send(producer.port, { headers: asyncHeaders(), body: "next" })).status, 202);
  });

  test("413 as soon as a chunked body passes the limit, and the next request is served", {
    timeout: 10_000,
  }, async () => {
    const before = (await entries()).length;
    const chunk = randomBytes(16 * 1024);
    const planned = 200;
    const result = await new Promise<{ status: number; sent: number }>((resolve, reject) => {
      let sent = 0;
      let answered = false;
      const req = request({
        host: "127.0.0.1",
        port: producer.port,
        method: "POST",
        path: "/",
        agent: false,
        headers: asyncHeaders({ "transfer-encoding": "chunked" }),
      });
      req.on("response", (res) => {
        answered = true;
        res.resume();
        resolve({ status: res.statusCode ?? 0, sent });
        req.destroy();
      });
      // Writing into a socket the producer closed fails; only the answer matters here.
      req.on("error", (err) => {
        if (!answered) reject(err);
      });
      const pump = () => {
        if (answered) return;
        if (sent >= planned) {
          req.end();
          return;
        }
        sent++;
        req.write(chunk);
        setTimeout(pump, 2);
      };
      pump();
    });
    assert.equal(result.status, 413);
    // The producer answered while the client was still sending, long before the planned 3.2 MB.
    assert.ok(result.sent < planned / 2, `client had sent ${result.sent} chunks before the answer`);
    assert.equal((await entries()).length, before);
    assert.equal((await send(producer.port, { headers: asyncHeaders(), body: "after" })).status, 202);
  });

  test("Expect: 100-continue learns about a refusal before sending the body, and sends it when welcome", {
    timeout: 10_000,
  }, async () => {
    const attempt = (host: string) =>
      new Promise<{ status: number; bodySent: boolean }>((resolve, reject) => {
        let bodySent = false;
        const req = request({
          host: "127.0.0.1",
          port: producer.port,
          method: "POST",
          path: "/",
          agent: false,
          headers: { "async-original-host": host, expect: "100-continue", "content-length": "4" },
        });
        req.on("continue", () => {
          bodySent = true;
          req.end("body");
        });
        req.on("response", (res) => {
          res.resume();
          res.on("end", () => {
            resolve({ status: res.statusCode ?? 0, bodySent });
            req.destroy();
          });
        });
        req.on("error", reject);
        req.flushHeaders();
      });
    assert.deepEqual(await attempt("example.com"), { status: 403, bodySent: false });
    assert.deepEqual(await attempt(TARGET), { status: 202, bodySent: true });
  });

  test("a client that goes away mid-body stores nothing, and the producer carries on", {
    timeout: 10_000,
  }, async () => {
    const before = (await entries()).length;
    await new Promise<void>((resolve) => {
      const req = request({
        host: "127.0.0.1",
        port: producer.port,
        method: "POST",
        path: "/",
        agent: false,
        headers: asyncHeaders({ "content-length": "1000" }),
      });
      req.on("error", () => resolve());
      req.write("only the first bytes", () => setTimeout(() => req.destroy(), 50));
      req.on("close", () => resolve());
    });
    assert.equal((await send(producer.port, { headers: asyncHeaders(), body: "next" })).status, 202);
    assert.equal((await entries()).length, before + 1);
  });

  test("a body exactly at the limit is accepted", async () => {
    const reply = await send(producer.port, { headers: asyncHeaders(), body: Buffer.alloc(LIMIT, 0x61) });
    assert.equal(reply.status, 202);
    assert.equal((await entryOf(String(reply.json.id))).request.body.length, LIMIT);
  });

  for (const [name, headers, path] of [
    ["no Async-Original-Host", {}, "/work"],
    ["a malformed host", { "async-original-host": "app.default.svc/evil" }, "/"],
    ["userinfo in the host", { "async-original-host": `user@${TARGET}` }, "/"],
    ["an empty host", { "async-original-host": "" }, "/"],
    ["an absolute-form request target", asyncHeaders(), "http://evil.example.com/x"],
  ] as const) {
    test(`400 for ${name}`, async () => {
      const reply = await send(producer.port, { headers, path, body: "x" });
      assert.equal(reply.status, 400);
      assert.equal(reply.json.error, ErrorCode.BadTarget);
    });
  }

  for (const host of [
    "example.com",
    "10.0.0.1:8080",
    "async-producer.knative-serving.svc.cluster.local",
    "async-producer.knative-serving.svc:8080",
    "self.local.test",
    "localhost:9998",
  ]) {
    test(`403 for the target ${host}`, async () => {
      const reply = await send(producer.port, { headers: { "async-original-host": host } });
      assert.equal(reply.status, 403);
      assert.equal(reply.json.error, ErrorCode.ForbiddenTarget);
    });
  }

  test("ALLOWED_TARGET_HOSTS lets listed hosts through", async () => {
    for (const host of ["localhost:9999", "app.local.test:3000"]) {
      const reply = await send(producer.port, { path: "/p?q=1", headers: { "async-original-host": host } });
      assert.equal(reply.status, 202, host);
      assert.equal((await entryOf(String(reply.json.id))).request.url, `http://${host}/p?q=1`);
    }
  });

  test("the envelope carries the service's policy from the registry; a client's Async-Delivery-Policy is dropped", async () => {
    const reply = await send(producer.port, {
      headers: asyncHeaders({ "async-delivery-policy": "max-attempts=1000; max-age=30d" }),
    });
    assert.equal(reply.status, 202);
    const { request } = await entryOf(String(reply.json.id));
    assert.deepEqual(request.policy, { maxAttempts: 3, minBackoffMs: 500 });
    assert.equal(request.headers["Async-Delivery-Policy"], undefined);
  });

  test("with Async-Original-Host, admin paths are async requests too", async () => {
    const reply = await send(producer.port, { method: "GET", path: "/healthz", headers: asyncHeaders() });
    assert.equal(reply.status, 202);
    assert.equal((await entryOf(String(reply.json.id))).request.url, `http://${TARGET}/healthz`);
  });

  describe("Idempotency-Key", () => {
    test("the same key and request twice: one entry, the same id, the second marked replayed", async () => {
      const key = `"${randomUUID()}"`;
      const before = (await entries()).length;
      const first = await send(producer.port, {
        headers: asyncHeaders({ "idempotency-key": key }),
        body: "pay 10",
      });
      const second = await send(producer.port, {
        headers: asyncHeaders({ "idempotency-key": key }),
        body: "pay 10",
      });
      assert.equal(first.status, 202);
      assert.equal(first.headers["idempotent-replayed"], undefined);
      assert.equal(second.status, 202);
      assert.equal(second.headers["idempotent-replayed"], "true");
      assert.equal(second.headers["async-request-id"], first.headers["async-request-id"]);
      assert.deepEqual(second.json, first.json);
      assert.equal((await entries()).length, before + 1);
      // The key travels with the request, so the app and the retry rules can see it.
      assert.deepEqual((await entryOf(String(first.json.id))).request.headers["Idempotency-Key"], [key]);
    });

    test("the same key with a different payload is refused with 422", async () => {
      const key = randomUUID();
      assert.equal(
        (await send(producer.port, { headers: asyncHeaders({ "idempotency-key": key }), body: "a" })).status,
        202,
      );
      const before = (await entries()).length;
      const other = await send(producer.port, {
        headers: asyncHeaders({ "idempotency-key": key }),
        body: "b",
      });
      assert.equal(other.status, 422);
      assert.equal(other.json.error, ErrorCode.IdempotencyMismatch);
      const otherPath = await send(producer.port, {
        path: "/other",
        headers: asyncHeaders({ "idempotency-key": key }),
        body: "a",
      });
      assert.equal(otherPath.status, 422);
      assert.equal((await entries()).length, before);
    });

    test("a malformed key is refused with 400", async () => {
      for (const key of ['""', `"${"k".repeat(256)}"`, '"open']) {
        const reply = await send(producer.port, { headers: asyncHeaders({ "idempotency-key": key }) });
        assert.equal(reply.status, 400, key);
        assert.equal(reply.json.error, ErrorCode.BadIdempotencyKey);
      }
    });

    test("the record lives in the stream's key space with the configured TTL", async () => {
      const key = randomUUID();
      await send(producer.port, { headers: asyncHeaders({ "idempotency-key": key }) });
      const recordKey = streamKeys(stream).idempotency(key);
      assert.equal(await redis.hget(recordKey, "state"), "accepted");
      const pttl = await redis.pttl(recordKey);
      assert.ok(pttl > 23 * 3_600_000, `PTTL ${pttl}`);
    });
  });

  test("/healthz, /readyz and /metrics", async () => {
    assert.equal((await send(producer.port, { method: "GET", path: "/healthz" })).status, 200);
    const ready = await send(producer.port, { method: "GET", path: "/readyz" });
    assert.equal(ready.status, 200);
    const metrics = await send(producer.port, { method: "GET", path: "/metrics" });
    assert.equal(metrics.status, 200);
    const length = await redis.xlen(stream);
    assert.match(
      metrics.text,
      new RegExp(`^knative_async_producer_stream_length\\{component="producer"\\} ${length}$`, "m"),
    );
    assert.match(
      metrics.text,
      /^knative_async_producer_requests_total\{outcome="accepted",component="producer"\} \d+$/m,
    );
    assert.match(
      metrics.text,
      /^knative_async_producer_requests_total\{outcome="replayed",component="producer"\} 1$/m,
    );
    assert.match(
      metrics.text,
      /^knative_async_producer_requests_total\{outcome="ASYNC_ERR_FORBIDDEN_TARGET",component="producer"\} \d+$/m,
    );
    assert.match(
      metrics.text,
      /^knative_async_producer_request_duration_seconds_count\{[^}]*outcome="accepted"[^}]*\} \d+$/m,
    );
    assert.match(metrics.text, /^knative_async_producer_accepted_bytes_total\{component="producer"\} \d+$/m);
  });

  // Last: it stops Redis.
  test("Redis stopped: 503 with Retry-After and not ready; after Redis is back, 202 again", async () => {
    const before = (await entries()).length;
    await server.stop();
    const started = Date.now();
    const refused = await send(producer.port, { headers: asyncHeaders(), body: "while down" });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers["retry-after"], "1");
    assert.equal(refused.json.error, ErrorCode.StoreUnavailable);
    assert.ok(Date.now() - started < 2000, "the 503 came quickly");
    const keyed = await send(producer.port, { headers: asyncHeaders({ "idempotency-key": randomUUID() }) });
    assert.equal(keyed.status, 503);
    // Not the client's fault: a warning with the code, once for the burst rather than per request.
    const warnings = logLines.filter((l) => l.level === "warn" && l.code === ErrorCode.StoreUnavailable);
    assert.equal(warnings.length, 1);
    // Nothing per request at info level: the only info lines are those of the start.
    assert.deepEqual(
      logLines.filter((l) => l.level === "info").map((l) => l.msg),
      ["async services registry loaded", "producer listening"],
    );
    assert.equal((await send(producer.port, { method: "GET", path: "/readyz" })).status, 503);
    const metrics = await send(producer.port, { method: "GET", path: "/metrics" });
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^knative_async_producer_stream_length\{component="producer"\} NaN$/im);

    await server.start();
    // This Redis keeps nothing across a restart: the controller publishes the service again (it does
    // when its connection comes back, see test/kube/controller.test.ts), and the producer hears of it.
    await new AsyncServicesWriter(redis, streamKeys(stream)).publish("default/app", {
      hosts: [TARGET],
      policy: {},
    });
    await waitFor(
      async () => (await send(producer.port, { method: "GET", path: "/readyz" })).status === 200,
      {
        timeoutMs: 10_000,
        what: "the producer to be ready again",
      },
    );
    const reply = await send(producer.port, { headers: asyncHeaders(), body: "after restart" });
    assert.equal(reply.status, 202);
    // Redis ran without persistence here, so only the entry written after the restart exists.
    assert.ok(before > 0);
    assert.deepEqual(
      (await entries()).map(([, f]) => decodeEnvelope(f[1] as string).id),
      [reply.json.id],
    );
  });
});

/** A redis-server replicating from `primaryPort`, started and stopped by the test. */
function startReplica(port: number, primaryPort: number, dir: string): ChildProcess {
  return spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "no",
      "--replicaof",
      "127.0.0.1",
      String(primaryPort),
    ],
    { stdio: "ignore" },
  );
}

describe("REDIS_WAIT_REPLICAS against a real replica", () => {
  let primary: TestRedisServer;
  let producer: RunningProducer;
  let redis: Redis;
  let replica: ChildProcess | undefined;
  let replicaPort: number;
  let replicaDir: string;
  const stream = `durable-${randomUUID()}`;

  before(async () => {
    primary = await startRedisServer();
    replicaPort = await freePort();
    replicaDir = mkdtempSync(join(tmpdir(), "knative-async-replica-"));
    producer = await startProducer(
      loadProducerConfig({
        PORT: "0",
        REDIS_ADDRESS: primary.address,
        REDIS_STREAM_NAME: stream,
        REDIS_WAIT_REPLICAS: "1",
        // Long enough that a replica that is up confirms in time even on a busy 2-core machine.
        REDIS_WAIT_TIMEOUT: "1s",
        REDIS_TIMEOUT: "1s",
        // About replicas, not targets: the target is allowed without a registry entry.
        ALLOWED_TARGET_HOSTS: TARGET,
      }),
      { logger: createLogger("producer", { level: "silent" }) },
    );
    redis = connectRedis(parseRedisAddress(primary.address), { name: "durability-test" });
    // Redis waits 5 s by default before a diskless full sync, hoping more replicas join.
    await redis.config("SET", "repl-diskless-sync-delay", "0");
  });

  after(async () => {
    await producer?.close();
    redis?.disconnect();
    if (replica && replica.exitCode === null) {
      const exited = new Promise((resolve) => replica?.once("exit", resolve));
      replica.kill("SIGKILL");
      await exited;
    }
    await primary?.cleanup();
    if (replicaDir) rmSync(replicaDir, { recursive: true, force: true });
  });

  const idsInStream = async () =>
    (await redis.xrange(stream, "-", "+")).map(([, f]) => decodeEnvelope(f[1] as string).id);

  test("with the replica down: 503 with the id, stored on the primary only", async () => {
    const started = Date.now();
    const reply = await send(producer.port, { headers: asyncHeaders(), body: "no replica" });
    assert.equal(reply.status, 503);
    assert.equal(reply.json.error, ErrorCode.NotReplicated);
    assert.equal(reply.headers["retry-after"], "1");
    const id = String(reply.headers["async-request-id"]);
    assert.match(String(reply.json.message), /primary only.*may still be delivered/);
    assert.ok(Date.now() - started >= 900, "answered only after the WAIT timeout");
    assert.ok((await idsInStream()).includes(id));
  });

  test("a key being confirmed gets 409; once the replica is up, a retry gets the first id", async () => {
    const key = `"${randomUUID()}"`;
    const headers = asyncHeaders({ "idempotency-key": key });
    const recordKey = streamKeys(stream).idempotency(key.slice(1, -1));
    const first = send(producer.port, { headers, body: "order 1" });
    await waitFor(async () => (await redis.hget(recordKey, "state")) === "accepting", {
      timeoutMs: 2000,
      what: "the first request to be stored",
    });
    const concurrent = await send(producer.port, { headers, body: "order 1" });
    assert.equal(concurrent.status, 409);
    assert.equal(concurrent.json.error, ErrorCode.IdempotencyInProgress);
    assert.equal(concurrent.headers["retry-after"], "1");

    const refused = await first;
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error, ErrorCode.NotReplicated);
    const id = String(refused.headers["async-request-id"]);
    assert.match(String(refused.json.message), /retry with the same Idempotency-Key/);

    // Still no replica: the retry confirms the same entry again, and fails again, without a new entry.
    const again = await send(producer.port, { headers, body: "order 1" });
    assert.equal(again.status, 503);
    assert.equal(again.headers["async-request-id"], id);

    replica = startReplica(replicaPort, primary.port, replicaDir);
    // "online" can show before the replica acknowledges offsets; a WAIT that succeeds proves it does.
    await waitFor(
      async () =>
        /slave0:.*state=online/.test(await redis.info("replication")) && (await redis.wait(1, 1000)) >= 1,
      { timeoutMs: 15_000, what: "the replica to sync and acknowledge" },
    );
    const accepted = await send(producer.port, { headers, body: "order 1" });
    assert.equal(accepted.status, 202);
    assert.equal(accepted.headers["async-request-id"], id);
    assert.equal(accepted.headers["idempotent-replayed"], "true");
    assert.equal(await redis.hget(recordKey, "state"), "accepted");
    const replay = await send(producer.port, { headers, body: "order 1" });
    assert.equal(replay.status, 202);
    assert.equal(replay.headers["async-request-id"], id);
    assert.equal((await idsInStream()).filter((x) => x === id).length, 1);
  });

  test("with the replica up: 202, and the entry is on the replica when the 202 arrives", async () => {
    const reply = await send(producer.port, { headers: asyncHeaders(), body: "replicated" });
    assert.equal(reply.status, 202);
    const onReplica = connectRedis(parseRedisAddress(`127.0.0.1:${replicaPort}`), { name: "replica-reader" });
    try {
      const ids = (await onReplica.xrange(stream, "-", "+")).map(
        ([, f]) => decodeEnvelope(f[1] as string).id,
      );
      assert.ok(ids.includes(String(reply.json.id)));
    } finally {
      onReplica.disconnect();
    }
  });
});
