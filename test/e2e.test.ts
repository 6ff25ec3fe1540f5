/**
 * End to end through the all-in-one wiring (gateway, producer, Redis, dispatcher, consumer, app), all
 * real: async requests reach the app once each, byte for byte; sync requests go straight through.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { type RunningDev, startDev } from "../src/dev/dev.js";
import type { AttemptInfo } from "../src/dispatcher/dispatcher.js";
import { connectRedis, parseRedisAddress } from "../src/lib/redis.js";
import { waitFor } from "./helpers/net.js";
import { startRedisServer, type TestRedisServer } from "./helpers/redis-server.js";

let redis: TestRedisServer;

before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis.cleanup();
});

interface Sent {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

function randomRequest(i: number): Sent {
  const methods = ["POST", "PUT", "PATCH", "DELETE", "GET"];
  const method = methods[i % methods.length] as string;
  const hasBody = method !== "GET" && method !== "DELETE";
  const body = !hasBody
    ? Buffer.alloc(0)
    : i % 3 === 0
      ? randomBytes(1 + ((i * 977) % 20_000))
      : Buffer.from(`{"n":${i},"text":"héllo ✓"}`);
  return {
    method,
    path: `/items/${i}/sub%20path?n=${i}&q=a+b&empty=&utf=%C3%A9`,
    headers: {
      "content-type": i % 3 === 0 ? "application/octet-stream" : "application/json",
      "x-custom": `value-${i}`,
      "x-trace": `t-${randomBytes(4).toString("hex")}`,
      prefer: "respond-async",
    },
    body,
  };
}

describe("end to end through the dev-mode wiring", () => {
  let dev: RunningDev;
  const attempts: AttemptInfo[] = [];

  before(async () => {
    dev = await startDev({
      port: 0,
      host: "127.0.0.1",
      always: false,
      sleep: "0ms",
      direct: false,
      redisAddress: redis.address,
      streamName: "e2e",
      logLevel: "silent",
      record: true,
      onAttempt: (a) => attempts.push(a),
    });
  });
  after(async () => {
    await dev.close();
  });

  test("200 async requests each reach the app once, with identical method, path, query, headers and body", async () => {
    const sent = Array.from({ length: 200 }, (_, i) => randomRequest(i));
    const ids = new Map<string, Sent>();
    await Promise.all(
      sent.map(async (request) => {
        const response = await fetch(`${dev.gatewayUrl}${request.path}`, {
          method: request.method,
          headers: request.headers,
          ...(request.body.length > 0 ? { body: request.body } : {}),
        });
        assert.equal(response.status, 202);
        const id = response.headers.get("async-request-id");
        assert.ok(id);
        assert.equal(response.headers.get("preference-applied"), "respond-async");
        assert.deepEqual(await response.json(), { id, status: "queued" });
        ids.set(id, request);
      }),
    );
    assert.equal(ids.size, 200, "ids are unique");

    await waitFor(() => dev.app.received.length >= 200, { timeoutMs: 30_000, what: "200 deliveries" });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(dev.app.received.length, 200, "each reached the app once");
    const seen = new Set<string>();
    for (const received of dev.app.received) {
      const id = received.headers["async-request-id"]?.[0];
      assert.ok(id && ids.has(id), "the app gets the request id");
      assert.ok(!seen.has(id), "no duplicates");
      seen.add(id);
      const original = ids.get(id) as Sent;
      assert.equal(received.method, original.method);
      assert.equal(received.url, original.path);
      assert.deepEqual(received.body, original.body);
      for (const name of ["content-type", "x-custom", "x-trace"]) {
        assert.deepEqual(received.headers[name], [original.headers[name]], name);
      }
      assert.deepEqual(received.headers.prefer, ["respond-sync"], "replayed as sync, so it cannot loop");
      assert.equal(received.headers["async-original-host"], undefined, "internal routing header stripped");
    }
    assert.ok(attempts.filter((a) => a.decision.action === "ack").length >= 200);
  });

  test("an entry written by the original Go producer, in its exact format, is replayed correctly", async () => {
    const redisClient = connectRedis(parseRedisAddress(redis.address), { name: "e2e-original" });
    try {
      const host = `127.0.0.1:${dev.ports.app}`;
      // Byte for byte what the original producer's json.Marshal(requestData) writes: canonical header
      // names, Async-Original-Host among them, no Host, no acceptedAt, no body encoding.
      const original = `{"id":"1eb6f4d2-8c4b-6d5e-9b1a-0242ac120002","url":"http://${host}/original?lang=go","body":"{\\"greeting\\":\\"hello\\"}","header":{"Accept":["*/*"],"Async-Original-Host":["${host}"],"Content-Type":["application/json"],"Prefer":["respond-async"],"User-Agent":["curl/7.64.1"],"X-Many":["a","b"]},"method":"POST"}`;
      await redisClient.xadd("e2e", "*", "data", original);
      await waitFor(() => dev.app.received.some((r) => r.url === "/original?lang=go"), {
        what: "original entry delivered",
      });
      const received = dev.app.received.find((r) => r.url === "/original?lang=go");
      assert.equal(received?.method, "POST");
      assert.equal(received?.body.toString(), '{"greeting":"hello"}');
      assert.deepEqual(received?.headers["x-many"], ["a", "b"]);
      assert.deepEqual(received?.headers["user-agent"], ["curl/7.64.1"]);
      assert.deepEqual(received?.headers.prefer, ["respond-sync"]);
      assert.equal(received?.headers["async-original-host"], undefined);
      assert.deepEqual(received?.headers["async-request-id"], ["1eb6f4d2-8c4b-6d5e-9b1a-0242ac120002"]);
    } finally {
      redisClient.disconnect();
    }
  });

  test("sync requests go straight to the app and get its answer", async () => {
    const before = dev.app.received.length;
    const response = await fetch(`${dev.gatewayUrl}/direct?x=1`, { method: "POST", body: "sync body" });
    assert.equal(response.status, 200);
    const answer = (await response.json()) as { url: string; method: string };
    assert.equal(answer.url, "/direct?x=1");
    assert.equal(answer.method, "POST");
    assert.equal(dev.app.received.length, before + 1);
    const received = dev.app.received.at(-1);
    assert.equal(received?.headers["async-request-id"], undefined, "not through the async path");
    assert.equal(received?.body.toString(), "sync body");
  });
});

describe("always-async mode", () => {
  test("everything is async except Prefer: respond-sync", async () => {
    const dev = await startDev({
      port: 0,
      host: "127.0.0.1",
      always: true,
      sleep: "0ms",
      direct: true,
      redisAddress: redis.address,
      streamName: "e2e-always",
      logLevel: "silent",
      record: true,
    });
    try {
      const plain = await fetch(`${dev.gatewayUrl}/a`);
      assert.equal(plain.status, 202);
      assert.equal(plain.headers.get("preference-applied"), null, "nothing was asked, nothing applied");
      const sync = await fetch(`${dev.gatewayUrl}/b`, { headers: { prefer: "respond-sync" } });
      assert.equal(sync.status, 200);
      await waitFor(() => dev.app.received.length === 2, { what: "both at the app" });
      assert.deepEqual(dev.app.received.map((r) => r.url).sort(), ["/a", "/b"]);
    } finally {
      await dev.close();
    }
  });
});
