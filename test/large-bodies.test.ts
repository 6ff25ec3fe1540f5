/**
 * Issue 9, item 6: the dispatcher's memory must not grow with body size times concurrency. 40 entries
 * of 6 MB (half binary, half text full of characters JSON escapes) are written straight into the stream,
 * then a real dispatcher (with a real consumer in CloudEvent mode) drains them at default settings, its
 * V8 heap capped as a small pod would cap it. Every body must reach the app byte for byte, and the
 * dispatcher's peak RSS (VmHWM) must stay under 256 MB; the consumer's too.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, type TestContext, test } from "node:test";
import type { Redis } from "ioredis";
import { DATA_FIELD } from "../src/lib/entry.js";
import { encodeEnvelopeBuffer } from "../src/lib/envelope.js";
import { leftovers, redisClient, startConsumer, startDispatcher } from "./faults/pipeline.js";
import { waitFor } from "./helpers/net.js";
import { type ComponentProcess, killAll } from "./helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "./helpers/redis-server.js";

const ENTRIES = 40;
/** The producer's default REQUEST_SIZE_LIMIT. */
const BODY_BYTES = 6_000_000;
const RSS_LIMIT_BYTES = 256 * 1000 * 1000;
/** As a 512Mi pod would run it: a heap of half the limit; strings held on the heap count here. */
const NODE_OPTIONS = "--max-old-space-size=256";

let redis: TestRedisServer;
let client: Redis;
let app: HashingApp;

before(async () => {
  redis = await startRedisServer();
  client = redisClient(redis);
  app = await startHashingApp();
});

after(async () => {
  await killAll();
  await app.close();
  client.disconnect();
  await redis.cleanup();
});

/** What the app received, by Async-Request-Id: only the SHA-256 and length of each body are kept. */
interface HashingApp {
  readonly port: number;
  readonly received: Map<string, { sha256: string; length: number; count: number }>;
  close(): Promise<void>;
}

async function startHashingApp(): Promise<HashingApp> {
  const received: HashingApp["received"] = new Map();
  const server: Server = createServer((req, res) => {
    const hash = createHash("sha256");
    let length = 0;
    req.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      length += chunk.length;
    });
    req.on("end", () => {
      const id = String(req.headers["async-request-id"]);
      const before = received.get(id);
      received.set(id, { sha256: hash.digest("hex"), length, count: (before?.count ?? 0) + 1 });
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A text body of `size` bytes, valid UTF-8, dense with what JSON escapes (quotes, backslashes, newlines,
 * a control character) and with multi-byte characters; each `seed` gives a different one.
 */
function textBody(size: number, seed: number): Buffer {
  const unit = Buffer.from(`{"n":${seed},"s":"a \\"quoted\\" line\\n\tñandú 中文 🚀 \u0001"}\n`);
  const body = Buffer.alloc(size, 0x20);
  for (let at = 0; at + unit.length <= size; at += unit.length) unit.copy(body, at);
  return body;
}

/** Writes the entries one at a time, so the test holds one body at once; returns the expected hashes. */
async function writeEntries(stream: string): Promise<Map<string, { sha256: string; length: number }>> {
  const expected = new Map<string, { sha256: string; length: number }>();
  for (let i = 0; i < ENTRIES; i++) {
    const body = i % 2 === 0 ? randomBytes(BODY_BYTES) : textBody(BODY_BYTES, i);
    const id = `large-${i}`;
    const envelope = encodeEnvelopeBuffer({
      id,
      url: `http://127.0.0.1:${app.port}/large/${i}`,
      method: "POST",
      headers: { "Content-Type": [i % 2 === 0 ? "application/octet-stream" : "application/json"] },
      body,
      acceptedAt: Date.now(),
    });
    await client.xadd(stream, "*", DATA_FIELD, envelope);
    expected.set(id, { sha256: createHash("sha256").update(body).digest("hex"), length: body.length });
  }
  return expected;
}

/** Peak resident set size of a live process, in bytes (VmHWM). */
function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
  return Number(kb) * 1024;
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

async function drain(mode: "cloudevent" | "direct", t: TestContext): Promise<void> {
  const stream = `large-${mode}`;
  app.received.clear();
  const expected = await writeEntries(stream);
  const consumer = mode === "cloudevent" ? await startConsumer({ NODE_OPTIONS }) : undefined;
  const dispatcher = await startDispatcher(
    redis,
    stream,
    consumer?.url ?? "http://127.0.0.1:1",
    `d-large-${mode}`,
    // The default CLAIM_IDLE: a delivery of a large body must not be taken over as stale meanwhile.
    { NODE_OPTIONS, DISPATCH_MODE: mode, CLAIM_IDLE: "30s" },
  );
  try {
    await expectDrained(stream, expected, { dispatcher, consumer }, mode, t);
  } finally {
    await dispatcher.kill("SIGKILL");
    await consumer?.kill("SIGKILL");
    await client.del(stream);
  }
}

/**
 * Every entry reaches the app byte for byte and is acknowledged, with the components alive and each
 * under RSS_LIMIT_BYTES at its peak.
 */
async function expectDrained(
  stream: string,
  expected: Map<string, { sha256: string; length: number }>,
  { dispatcher, consumer }: { dispatcher: ComponentProcess; consumer: ComponentProcess | undefined },
  label: string,
  t: TestContext,
): Promise<void> {
  const died = () => !dispatcher.running() || (consumer !== undefined && !consumer.running());
  await waitFor(() => app.received.size === ENTRIES || died(), {
    timeoutMs: 120_000,
    intervalMs: 100,
    what: `${ENTRIES} large bodies delivered (${label})`,
  }).catch(() => undefined);
  assert.ok(dispatcher.running(), `the dispatcher died:\n${dispatcher.output().slice(-3000)}`);
  if (consumer) assert.ok(consumer.running(), `the consumer died:\n${consumer.output().slice(-3000)}`);
  const dispatcherPeak = peakRss(dispatcher.pid);
  const consumerPeak = consumer ? peakRss(consumer.pid) : 0;
  const figures = `dispatcher peak RSS ${mb(dispatcherPeak)}${consumer ? `, consumer ${mb(consumerPeak)}` : ""}`;
  t.diagnostic(`${label}: ${figures}`);
  assert.equal(app.received.size, ENTRIES, `delivered ${app.received.size} of ${ENTRIES}; ${figures}`);
  for (const [id, want] of expected) {
    const got = app.received.get(id);
    assert.deepEqual(
      got && { sha256: got.sha256, length: got.length },
      want,
      `${id} byte for byte (${label})`,
    );
  }
  await waitFor(async () => (await leftovers(client, stream)).stream === 0, {
    timeoutMs: 10_000,
    what: "every entry acknowledged",
  });
  assert.deepEqual(await leftovers(client, stream), {
    stream: 0,
    pending: 0,
    retryScheduled: 0,
    deadLettered: 0,
  });
  assert.ok(dispatcherPeak < RSS_LIMIT_BYTES, `${label}: ${figures}, over ${mb(RSS_LIMIT_BYTES)}`);
  assert.ok(consumerPeak < RSS_LIMIT_BYTES, `${label}: ${figures}, over ${mb(RSS_LIMIT_BYTES)}`);
}

test(
  "40 entries of 6 MB drain through dispatcher and consumer (CloudEvent), each under 256 MB RSS",
  {
    timeout: 180_000,
  },
  (t) => drain("cloudevent", t),
);

test(
  "40 entries of 6 MB drain through the dispatcher's direct mode, under 256 MB RSS",
  {
    timeout: 180_000,
  },
  (t) => drain("direct", t),
);

test("a dispatcher that takes over a dead one's 40 entries of 6 MB delivers them all, under 256 MB RSS", {
  timeout: 180_000,
}, async (t) => {
  const stream = "large-takeover";
  app.received.clear();
  const expected = await writeEntries(stream);
  // The first dispatcher may hold them all at once, and its sink never answers: all 40 stay pending
  // on it until it is killed, as a dispatcher that ran out of memory would leave them.
  const silent: Server = createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const first = await startDispatcher(
    redis,
    stream,
    `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
    "d-first",
    { DISPATCH_BYTES_IN_FLIGHT: String(1024 ** 4) },
  );
  let second: ComponentProcess | undefined;
  try {
    await waitFor(async () => (await leftovers(client, stream)).pending === ENTRIES, {
      timeoutMs: 30_000,
      what: "all 40 pending on the first dispatcher",
    });
    await first.kill("SIGKILL");
    second = await startDispatcher(redis, stream, "http://127.0.0.1:1", "d-second", {
      NODE_OPTIONS,
      DISPATCH_MODE: "direct",
      // Short, so that the dead one's entries are taken over soon; everything else at its default.
      CLAIM_IDLE: "2s",
    });
    await expectDrained(stream, expected, { dispatcher: second, consumer: undefined }, "take-over", t);
  } finally {
    await first.kill("SIGKILL");
    await second?.kill("SIGKILL");
    silent.closeAllConnections();
    silent.close();
    await client.del(stream);
  }
});
