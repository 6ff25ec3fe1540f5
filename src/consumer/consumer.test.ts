import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, request as httpRequest } from "node:http";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { CloudEvent, HTTP } from "cloudevents";
import { request } from "undici";
import { freePort } from "../../test/helpers/net.js";
import { UNSIGNED_ENV } from "../../test/helpers/signing.js";
import { LOOPBACK_TARGET_ENV } from "../../test/helpers/targets.js";
import { type AsyncRequest, encodeEnvelope } from "../lib/envelope.js";
import { ErrorCode } from "../lib/errors.js";
import { listen } from "../lib/http.js";
import { createLogger } from "../lib/logger.js";
import { signatureHeaders, signingKeys } from "../lib/wire/signature.js";
import { startSampleApp } from "../sample-app/sample-app.js";
import { loadConsumerConfig } from "./config.js";
import { type RunningConsumer, startConsumer } from "./consumer.js";

const STREAM_EVENT_TYPE = "dev.knative.sources.redisstream";

/** A logger whose JSON lines the test can read back. */
function capturedLogger(component: string) {
  const lines: Record<string, unknown>[] = [];
  const stream = new PassThrough();
  stream.on("data", (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n"))
      if (line.trim() !== "") lines.push(JSON.parse(line));
  });
  return { logger: createLogger(component, { level: "debug", destination: stream }), lines };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function post(port: number, headers: Record<string, string>, body: string | Buffer): Promise<Answer> {
  const res = await request(`http://127.0.0.1:${port}/`, {
    method: "POST",
    headers,
    body,
    headersTimeout: 20_000,
  });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** A binary-mode event shaped like eventing-redis's RedisStreamSource (and our dispatcher) sends. */
function sendBinary(port: number, fields: unknown, extra: Record<string, string> = {}): Promise<Answer> {
  return post(
    port,
    {
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-type": STREAM_EVENT_TYPE,
      "ce-id": extra["ce-id"] ?? "1700000000000-0",
      "ce-source": "127.0.0.1:6379/mystream",
      ...extra,
    },
    typeof fields === "string" ? fields : JSON.stringify(fields),
  );
}

describe("consumer", () => {
  let app: Awaited<ReturnType<typeof startSampleApp>>;
  let consumer: RunningConsumer;
  let logs: ReturnType<typeof capturedLogger>;
  let appOrigin: string;

  const envelope = (overrides: Partial<AsyncRequest> = {}): AsyncRequest => ({
    id: `req-${randomBytes(6).toString("hex")}`,
    url: `${appOrigin}/hello?sleep=0ms&x=1`,
    method: "POST",
    headers: { "Content-Type": ["application/json"], Prefer: ["respond-async"], Host: ["hello.example.com"] },
    body: Buffer.from('{"hello":"world"}'),
    ...overrides,
  });
  const receivedFor = (id: string) => app.received.filter((r) => r.headers["async-request-id"]?.[0] === id);

  before(async () => {
    app = await startSampleApp(
      { port: 0, logLevel: "silent", sleepMs: 0, record: true },
      { logger: createLogger("sample-app", { level: "silent" }) },
    );
    appOrigin = `http://127.0.0.1:${app.port}`;
    logs = capturedLogger("consumer");
    consumer = await startConsumer(
      loadConsumerConfig({ PORT: "0", REQUEST_TIMEOUT: "2s", ...LOOPBACK_TARGET_ENV, ...UNSIGNED_ENV }),
      {
        logger: logs.logger,
      },
    );
  });
  after(async () => {
    await consumer.close();
    await app.close();
  });

  test("a binary-mode event is replayed byte for byte and answered 200 with the target's status", async () => {
    const body = randomBytes(64 * 1024);
    const req = envelope({
      method: "PUT",
      url: `${appOrigin}/upload/a%2Fb?sleep=0ms&name=x&name=y`,
      body,
      headers: {
        "Content-Type": ["application/octet-stream"],
        "X-Multi": ["1", "2"],
        Host: ["up.example.com"],
      },
    });
    const answer = await sendBinary(consumer.port, ["data", encodeEnvelope(req)], {
      "ce-asyncrequestid": req.id,
      "ce-asyncattempt": "2",
    });
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.headers["async-target-status"], "200");
    assert.match(String(answer.headers["async-target-duration-ms"]), /^\d+$/);
    const [got, ...more] = receivedFor(req.id);
    assert.ok(got);
    assert.equal(more.length, 0);
    assert.equal(got.method, "PUT");
    assert.equal(got.url, "/upload/a%2Fb?sleep=0ms&name=x&name=y");
    assert.ok(got.body.equals(body));
    assert.deepEqual(got.headers["x-multi"], ["1", "2"]);
    assert.deepEqual(got.headers.prefer, ["respond-sync"]);
    assert.deepEqual(got.headers["x-forwarded-host"], ["up.example.com"]);
    assert.deepEqual(got.headers["async-attempt"], ["2"]);
  });

  test("an entry in the original's exact format is replayed correctly", async () => {
    // What the original Go producer wrote (http.Header canonical names, no Host, the body as a string,
    // Content-Length kept) and what eventing-redis's RedisStreamSource sends for it.
    const original = JSON.stringify({
      id: "1ec5e1f0-4b39-6b5e-9b4f-0242ac120002",
      url: `${appOrigin}/orders/42?sleep=0ms&expand=items`,
      body: '{"order":42,"note":"caf\u00e9"}',
      header: {
        Accept: ["*/*"],
        "Async-Original-Host": ["orders.default.svc.cluster.local"],
        "Content-Length": ["31"],
        "Content-Type": ["application/json"],
        Prefer: ["respond-async"],
        "User-Agent": ["curl/7.68.0"],
      },
      method: "POST",
    });
    const answer = await sendBinary(consumer.port, ["data", original], { "ce-id": "1612345678901-0" });
    assert.equal(answer.status, 200, answer.body);
    const [got] = receivedFor("1ec5e1f0-4b39-6b5e-9b4f-0242ac120002");
    assert.ok(got, "the app received the request");
    assert.equal(got.method, "POST");
    assert.equal(got.url, "/orders/42?sleep=0ms&expand=items");
    assert.equal(got.body.toString("utf8"), '{"order":42,"note":"caf\u00e9"}');
    assert.deepEqual(got.headers["content-length"], [String(got.body.length)]);
    assert.deepEqual(got.headers["content-type"], ["application/json"]);
    assert.deepEqual(got.headers["user-agent"], ["curl/7.68.0"]);
    assert.deepEqual(got.headers.prefer, ["respond-sync"]);
    assert.equal(got.headers["async-original-host"], undefined);
    assert.equal(got.headers["x-forwarded-host"], undefined);
  });

  test("a retried entry (extra fields after data) is replayed", async () => {
    const req = envelope();
    const fields = ["data", encodeEnvelope(req), "attempts", "2", "firstAttemptAt", "1700000000000"];
    const answer = await sendBinary(consumer.port, fields);
    assert.equal(answer.status, 200, answer.body);
    assert.equal(receivedFor(req.id).length, 1);
  });

  test("structured mode with data, data_base64, and data that is the envelope itself", async () => {
    const a = envelope();
    const structured = (event: Record<string, unknown>) =>
      post(
        consumer.port,
        { "content-type": "application/cloudevents+json; charset=utf-8" },
        JSON.stringify({ specversion: "1.0", type: STREAM_EVENT_TYPE, source: "s", id: "1-0", ...event }),
      );
    assert.equal((await structured({ data: ["data", encodeEnvelope(a)] })).status, 200);
    const b = envelope({ body: randomBytes(1000) });
    const dataBase64 = Buffer.from(JSON.stringify(["data", encodeEnvelope(b)])).toString("base64");
    assert.equal((await structured({ data_base64: dataBase64 })).status, 200);
    const c = envelope();
    assert.equal((await structured({ data: JSON.parse(encodeEnvelope(c)) })).status, 200);
    const d = envelope();
    assert.equal(
      (await sendBinary(consumer.port, encodeEnvelope(d))).status,
      200,
      "binary, envelope as data",
    );
    for (const r of [a, c, d]) assert.deepEqual(receivedFor(r.id)[0]?.body, r.body);
    assert.ok(receivedFor(b.id)[0]?.body.equals(b.body));
  });

  test("events built by the official cloudevents SDK are accepted (binary and structured)", async () => {
    const emit = async (message: { headers: Record<string, unknown>; body: unknown }) =>
      post(
        consumer.port,
        Object.fromEntries(Object.entries(message.headers).map(([k, v]) => [k, String(v)])),
        message.body as string | Buffer,
      );
    const a = envelope({ body: randomBytes(500) });
    const event = new CloudEvent({
      specversion: "1.0",
      type: STREAM_EVENT_TYPE,
      source: "redis.example:6379/mystream",
      id: "1700000000001-0",
      datacontenttype: "application/json",
      data: ["data", encodeEnvelope(a)],
      asyncrequestid: a.id,
      asyncattempt: "3",
    });
    const binary = await emit(HTTP.binary(event));
    assert.equal(binary.status, 200, binary.body);
    assert.ok(receivedFor(a.id)[0]?.body.equals(a.body));
    assert.deepEqual(receivedFor(a.id)[0]?.headers["async-attempt"], ["3"]);

    const b = envelope();
    const structured = await emit(HTTP.structured(event.cloneWith({ data: ["data", encodeEnvelope(b)] })));
    assert.equal(structured.status, 200, structured.body);
    assert.equal(receivedFor(b.id).length, 1);

    const c = envelope();
    const bytes = new CloudEvent({
      type: STREAM_EVENT_TYPE,
      source: "s",
      id: "1700000000002-0",
      data: Buffer.from(JSON.stringify(["data", encodeEnvelope(c)])),
    });
    const base64 = await emit(HTTP.structured(bytes));
    assert.equal(base64.status, 200, base64.body);
    assert.equal(receivedFor(c.id).length, 1);
  });

  test("malformed events are answered 400 with the reason, logged, and never replayed", async () => {
    const before = app.received.length;
    const cases: [string, () => Promise<Answer>][] = [
      ["not JSON", () => sendBinary(consumer.port, "[not json", { "ce-id": "bad-1" })],
      ["no data field", () => sendBinary(consumer.port, ["other", "x"], { "ce-id": "bad-2" })],
      ["not strings", () => sendBinary(consumer.port, ["data", 42], { "ce-id": "bad-3" })],
      [
        "bad envelope",
        () => sendBinary(consumer.port, ["data", '{"url":"http://x/"}'], { "ce-id": "bad-4" }),
      ],
      ["envelope not JSON", () => sendBinary(consumer.port, ["data", "{oops"], { "ce-id": "bad-5" })],
      ["empty", () => sendBinary(consumer.port, "", { "ce-id": "bad-6" })],
      ["not a CloudEvent", () => post(consumer.port, { "content-type": "application/json" }, "[]")],
      ["batch", () => post(consumer.port, { "content-type": "application/cloudevents-batch+json" }, "[]")],
      [
        "structured, no data",
        () => post(consumer.port, { "content-type": "application/cloudevents+json" }, '{"id":"bad-9"}'),
      ],
      [
        "bad header in the envelope",
        () =>
          sendBinary(consumer.port, ["data", encodeEnvelope(envelope({ headers: { "X-Bad": ["a\nb"] } }))], {
            "ce-id": "bad-10",
          }),
      ],
    ];
    for (const [name, send] of cases) {
      const answer = await send();
      assert.equal(answer.status, 400, `${name}: ${answer.body}`);
      assert.equal(answer.headers["async-error"], ErrorCode.MalformedEvent, name);
      const body = JSON.parse(answer.body) as { error: string; message: string };
      assert.equal(body.error, ErrorCode.MalformedEvent);
      assert.ok(body.message.length > 0, name);
    }
    assert.equal(app.received.length, before, "nothing reached the app");
    const warned = logs.lines.filter((l) => l.level === "warn" && l.msg === "malformed event, not retried");
    assert.ok(warned.some((l) => l.ceId === "bad-4" && String(l.reason).includes("id")));
    assert.ok(warned.some((l) => l.ceId === "bad-9"));
  });

  test("a retryable target status is 502 with Async-Target-Status and Retry-After", async () => {
    const busy = createServer((req, res) => {
      req.resume();
      res.writeHead(503, { "retry-after": "30" }).end("busy");
    });
    const port = await listen(busy, 0, "127.0.0.1");
    try {
      const answer = await sendBinary(consumer.port, [
        "data",
        encodeEnvelope(envelope({ url: `http://127.0.0.1:${port}/` })),
      ]);
      assert.equal(answer.status, 502);
      assert.equal(answer.headers["async-target-status"], "503");
      assert.equal(answer.headers["retry-after"], "30");
      assert.equal(answer.headers["async-error"], undefined);
    } finally {
      busy.closeAllConnections();
      busy.close();
    }
    const viaApp = await sendBinary(consumer.port, [
      "data",
      encodeEnvelope(envelope({ url: `${appOrigin}/?sleep=0ms&status=500` })),
    ]);
    assert.equal(viaApp.status, 502);
    assert.equal(viaApp.headers["async-target-status"], "500");
  });

  test("a final 4xx is 200 with Async-Target-Status", async () => {
    for (const status of [400, 404, 422]) {
      const answer = await sendBinary(consumer.port, [
        "data",
        encodeEnvelope(envelope({ url: `${appOrigin}/?sleep=0ms&status=${status}` })),
      ]);
      assert.equal(answer.status, 200);
      assert.equal(answer.headers["async-target-status"], String(status));
    }
  });

  test("an unreachable target is 502 TargetUnreachable; a slow one is 504 TargetTimeout", async () => {
    const closed = await freePort();
    const unreachable = await sendBinary(consumer.port, [
      "data",
      encodeEnvelope(envelope({ url: `http://127.0.0.1:${closed}/` })),
    ]);
    assert.equal(unreachable.status, 502);
    assert.equal(unreachable.headers["async-error"], ErrorCode.TargetUnreachable);
    assert.equal(unreachable.headers["async-target-status"], undefined);

    const slow = envelope({ url: `${appOrigin}/slow?sleep=5s`, policy: { timeoutMs: 200 } });
    const started = Date.now();
    const timedOut = await sendBinary(consumer.port, ["data", encodeEnvelope(slow)]);
    assert.equal(timedOut.status, 504);
    assert.equal(timedOut.headers["async-error"], ErrorCode.TargetTimeout);
    assert.ok(Date.now() - started < 2_000);
  });

  test("admin endpoints: health, readiness, and metrics by outcome", async () => {
    const get = async (path: string) => {
      const res = await request(`http://127.0.0.1:${consumer.port}${path}`);
      return { status: res.statusCode, body: await res.body.text() };
    };
    assert.equal((await get("/healthz")).status, 200);
    assert.equal((await get("/readyz")).status, 200);
    const metrics = await get("/metrics");
    assert.equal(metrics.status, 200);
    assert.match(
      metrics.body,
      /knative_async_consumer_deliveries_total\{outcome="2xx",component="consumer"\} \d+/,
    );
    assert.match(
      metrics.body,
      /knative_async_consumer_deliveries_total\{outcome="ASYNC_ERR_MALFORMED_EVENT"/,
    );
    assert.match(
      metrics.body,
      /knative_async_consumer_replay_duration_seconds_count\{component="consumer"\} \d+/,
    );
    const wrongMethod = await request(`http://127.0.0.1:${consumer.port}/`);
    assert.equal(wrongMethod.statusCode, 405);
    await wrongMethod.body.dump();
  });
});

describe("consumer size limit", () => {
  let app: Awaited<ReturnType<typeof startSampleApp>>;
  let small: RunningConsumer;
  let standard: RunningConsumer;

  before(async () => {
    app = await startSampleApp(
      { port: 0, logLevel: "silent", sleepMs: 0, record: true },
      { logger: createLogger("sample-app", { level: "silent" }) },
    );
    const logger = createLogger("consumer", { level: "silent" });
    small = await startConsumer(
      loadConsumerConfig({ PORT: "0", EVENT_SIZE_LIMIT: "65536", ...LOOPBACK_TARGET_ENV, ...UNSIGNED_ENV }),
      { logger },
    );
    standard = await startConsumer(
      loadConsumerConfig({ PORT: "0", ...LOOPBACK_TARGET_ENV, ...UNSIGNED_ENV }),
      { logger },
    );
  });
  after(async () => {
    await small.close();
    await standard.close();
    await app.close();
  });

  const bigEvent = (bytes: number) =>
    JSON.stringify([
      "data",
      encodeEnvelope({
        id: `big-${bytes}`,
        url: `http://127.0.0.1:${app.port}/big?sleep=0ms`,
        method: "POST",
        headers: {},
        body: randomBytes(bytes),
      }),
    ]);

  test("an event over EVENT_SIZE_LIMIT is 413, declared or streamed, and not replayed", async () => {
    const declared = await sendBinary(small.port, bigEvent(100_000));
    assert.equal(declared.status, 413);
    assert.equal(JSON.parse(declared.body).error, ErrorCode.BodyTooLarge);

    // Chunked, so the limit can only be found while the body streams.
    const body = bigEvent(100_000);
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: "127.0.0.1",
          port: small.port,
          method: "POST",
          headers: { "content-type": "application/json", "ce-specversion": "1.0", "ce-id": "x" },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      for (let i = 0; i < body.length; i += 16_384) req.write(body.slice(i, i + 16_384));
      req.end();
    });
    assert.equal(streamed, 413);
    assert.equal(app.received.length, 0);
  });

  test("the default limit holds a 6 MB binary body, replayed byte for byte", async () => {
    const body = randomBytes(6_000_000);
    const event = JSON.stringify([
      "data",
      encodeEnvelope({
        id: "six-mb",
        url: `http://127.0.0.1:${app.port}/six?sleep=0ms`,
        method: "POST",
        headers: {},
        body,
      }),
    ]);
    const answer = await sendBinary(standard.port, event);
    assert.equal(answer.status, 200, answer.body);
    const got = app.received.find((r) => r.headers["async-request-id"]?.[0] === "six-mb");
    assert.ok(got?.body.equals(body));
  });
});

describe("consumer close", () => {
  test("finishes in-flight replays, then stops listening", async () => {
    const app = await startSampleApp(
      { port: 0, logLevel: "silent", sleepMs: 0, record: false },
      { logger: createLogger("sample-app", { level: "silent" }) },
    );
    const consumer = await startConsumer(
      loadConsumerConfig({ PORT: "0", ...LOOPBACK_TARGET_ENV, ...UNSIGNED_ENV }),
      {
        logger: createLogger("consumer", { level: "silent" }),
      },
    );
    try {
      const inFlight = sendBinary(consumer.port, [
        "data",
        encodeEnvelope({
          id: "slow",
          url: `http://127.0.0.1:${app.port}/?sleep=400ms`,
          method: "GET",
          headers: {},
          body: Buffer.alloc(0),
        }),
      ]);
      await new Promise((r) => setTimeout(r, 100));
      const started = Date.now();
      await consumer.close();
      const closeMs = Date.now() - started;
      assert.ok(closeMs >= 200, "close waited for the replay");
      assert.ok(closeMs < 2_500, `close ended the kept-alive connection at once (took ${closeMs} ms)`);
      const answer = await inFlight;
      assert.equal(answer.status, 200);
      assert.equal(answer.headers["async-target-status"], "200");
      await assert.rejects(sendBinary(consumer.port, ["data", "{}"]), /ECONNREFUSED/);
    } finally {
      await consumer.close();
      await app.close();
    }
  });
});

describe("consumer authentication (signed events)", () => {
  let app: Awaited<ReturnType<typeof startSampleApp>>;
  let strict: RunningConsumer;
  let lenient: RunningConsumer;
  const secret = "consumer-test-secret";

  before(async () => {
    app = await startSampleApp(
      { port: 0, logLevel: "silent", sleepMs: 0, record: true },
      { logger: createLogger("sample-app", { level: "silent" }) },
    );
    const logger = createLogger("consumer", { level: "silent" });
    const env = { PORT: "0", EVENT_SIGNING_SECRETS: `old-secret,${secret}`, ...LOOPBACK_TARGET_ENV };
    strict = await startConsumer(loadConsumerConfig(env), { logger });
    lenient = await startConsumer(loadConsumerConfig({ ...env, ...UNSIGNED_ENV }), { logger });
  });
  after(async () => {
    await Promise.all([strict.close(), lenient.close()]);
    await app.close();
  });

  const event = (path: string) => {
    const id = `auth-${randomBytes(6).toString("hex")}`;
    const request: AsyncRequest = {
      id,
      url: `http://127.0.0.1:${app.port}${path}`,
      method: "POST",
      headers: {},
      body: Buffer.from("hi"),
    };
    return { id, body: Buffer.from(JSON.stringify(["data", encodeEnvelope(request)])) };
  };
  const ceHeaders = {
    "content-type": "application/json",
    "ce-specversion": "1.0",
    "ce-type": STREAM_EVENT_TYPE,
    "ce-id": "5-0",
    "ce-source": "redis://127.0.0.1:6379/mystream",
  };
  const signed = (keys: string[], body: Buffer, at = Date.now()) => {
    const list = signatureHeaders(signingKeys(keys), "5-0", body, at);
    const out: Record<string, string> = {};
    for (let i = 0; i + 1 < list.length; i += 2) out[list[i] as string] = list[i + 1] as string;
    return out;
  };
  const seen = (id: string) => app.received.some((r) => r.headers["async-request-id"]?.[0] === id);

  test("by default only events signed with a configured secret are replayed; others get 401", async () => {
    const good = event("/signed");
    const ok = await post(strict.port, { ...ceHeaders, ...signed([secret], good.body) }, good.body);
    assert.equal(ok.status, 200, ok.body);
    assert.ok(seen(good.id));

    const cases: [string, Record<string, string>][] = [
      ["unsigned", {}],
      ["another secret", signed(["not-ours"], Buffer.from("x"))],
      ["signed over another body", signed([secret], Buffer.from("something else"))],
      ["signed ten minutes ago", signed([secret], good.body, Date.now() - 600_000)],
    ];
    for (const [name, headers] of cases) {
      const bad = event(`/${name.replaceAll(" ", "-")}`);
      const body = name === "signed ten minutes ago" ? good.body : bad.body;
      const answer = await post(strict.port, { ...ceHeaders, ...headers }, body);
      assert.equal(answer.status, 401, `${name}: ${answer.body}`);
      assert.equal(JSON.parse(answer.body).error, ErrorCode.Unauthenticated, name);
      assert.ok(!seen(bad.id), `${name}: nothing replayed`);
    }
  });

  test("the old secret still works during a rotation", async () => {
    const rotated = event("/rotated");
    const answer = await post(
      strict.port,
      { ...ceHeaders, ...signed(["old-secret"], rotated.body) },
      rotated.body,
    );
    assert.equal(answer.status, 200, answer.body);
  });

  test("EVENT_ACCEPT_UNSIGNED takes unsigned events, but never a bad signature", async () => {
    const unsigned = event("/unsigned");
    assert.equal((await post(lenient.port, ceHeaders, unsigned.body)).status, 200);
    assert.ok(seen(unsigned.id));
    const forged = event("/forged");
    const answer = await post(
      lenient.port,
      { ...ceHeaders, ...signed(["not-ours"], forged.body) },
      forged.body,
    );
    assert.equal(answer.status, 401);
    assert.ok(!seen(forged.id));
  });
});
