import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { request } from "undici";
import { ConfigError } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { loadSampleAppConfig, sampleAppEnvSchema } from "./config.js";
import { type RecordedRequest, type RunningSampleApp, startSampleApp } from "./sample-app.js";

const silent = createLogger("sample-app", { level: "silent" });

async function call(port: number, path: string, options: Parameters<typeof request>[1] = {}) {
  const started = Date.now();
  const res = await request(`http://127.0.0.1:${port}${path}`, { headersTimeout: 10_000, ...options });
  const body = await res.body.text();
  return { status: res.statusCode, body, ms: Date.now() - started };
}

describe("sample app", () => {
  let app: RunningSampleApp;
  const seen: RecordedRequest[] = [];

  before(async () => {
    app = await startSampleApp(
      { port: 0, logLevel: "silent", sleepMs: 300, record: true },
      { logger: silent, onRequest: (r) => seen.push(r) },
    );
  });
  after(() => app.close());

  test("sleeps the configured time, then answers JSON", async () => {
    const answer = await call(app.port, "/hello");
    assert.equal(answer.status, 200);
    assert.ok(answer.ms >= 290, `answered after ${answer.ms} ms`);
    const json = JSON.parse(answer.body);
    assert.equal(json.sleptMs, 300);
    assert.equal(json.url, "/hello");
  });

  test("?sleep and ?status override per request", async () => {
    const fast = await call(app.port, "/x?sleep=10ms");
    assert.equal(fast.status, 200);
    assert.ok(fast.ms < 250, `answered after ${fast.ms} ms`);
    assert.equal(JSON.parse(fast.body).sleptMs, 10);
    const failing = await call(app.port, "/x?sleep=0ms&status=503");
    assert.equal(failing.status, 503);
    assert.equal((await call(app.port, "/x?sleep=forever")).status, 400);
    assert.equal((await call(app.port, "/x?sleep=0ms&status=99")).status, 400);
  });

  test("records what it received, byte for byte, in memory and at GET /_received", async () => {
    assert.equal((await call(app.port, "/_received", { method: "DELETE" })).status, 204);
    assert.equal(app.received.length, 0);
    seen.length = 0;
    const body = randomBytes(4096);
    const answer = await call(app.port, "/upload?sleep=0ms&a=1", {
      method: "POST",
      headers: {
        "x-multi": ["1", "2"],
        "async-request-id": "r-1",
        "content-type": "application/octet-stream",
      },
      body,
    });
    assert.equal(answer.status, 200);
    assert.equal(JSON.parse(answer.body).asyncRequestId, "r-1");
    const [got] = app.received;
    assert.ok(got);
    assert.equal(got.method, "POST");
    assert.equal(got.url, "/upload?sleep=0ms&a=1");
    assert.ok(got.body.equals(body));
    assert.deepEqual(got.headers["x-multi"], ["1", "2"]);
    assert.ok(Math.abs(got.receivedAt - Date.now()) < 5_000);
    assert.equal(seen.length, 1, "onRequest saw it");

    const listed = JSON.parse((await call(app.port, "/_received")).body) as {
      url: string;
      body: string;
      headers: Record<string, string[]>;
    }[];
    assert.equal(listed.length, 1);
    const [first] = listed;
    assert.ok(first);
    assert.equal(first.url, "/upload?sleep=0ms&a=1");
    assert.ok(Buffer.from(first.body, "base64").equals(body));
    assert.deepEqual(first.headers["x-multi"], ["1", "2"]);
  });

  test("close cuts requests still sleeping", async () => {
    const sleeper = await startSampleApp(
      { port: 0, logLevel: "silent", sleepMs: 60_000, record: false },
      { logger: silent },
    );
    const pending = call(sleeper.port, "/").catch((err: Error) => err);
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await sleeper.close();
    assert.ok(Date.now() - started < 5_000);
    assert.ok((await pending) instanceof Error);
  });
});

test("without RECORD nothing is kept and /_received is an ordinary path", async () => {
  const seen: RecordedRequest[] = [];
  const app = await startSampleApp(
    { port: 0, logLevel: "silent", sleepMs: 0, record: false },
    { logger: silent, onRequest: (r) => seen.push(r) },
  );
  try {
    const answer = await call(app.port, "/_received");
    assert.equal(answer.status, 200);
    assert.equal(JSON.parse(answer.body).url, "/_received");
    assert.equal(app.received.length, 0);
    assert.equal(seen.length, 1);
  } finally {
    await app.close();
  }
});

test("sample app config: defaults like the original test app, and its env names", () => {
  assert.deepEqual(loadSampleAppConfig({}), { port: 8080, logLevel: "info", sleepMs: 10_000, record: false });
  assert.deepEqual(loadSampleAppConfig({ PORT: "0", SLEEP: "250ms", RECORD: "true", LOG_LEVEL: "warn" }), {
    port: 0,
    logLevel: "warn",
    sleepMs: 250,
    record: true,
  });
  assert.deepEqual(Object.keys(sampleAppEnvSchema.shape).sort(), ["LOG_LEVEL", "PORT", "RECORD", "SLEEP"]);
  assert.throws(() => loadSampleAppConfig({ SLEEP: "a while" }), ConfigError);
  assert.throws(() => loadSampleAppConfig({ RECORD: "maybe" }), ConfigError);
});
