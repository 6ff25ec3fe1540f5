/**
 * Uploads that hold the producer's memory, seen from raw TCP clients (node:net) against a real producer
 * process and a real redis-server: connections that send headers and no body, bodies that trickle,
 * many large bodies at once, headers that never end. Idle or slow senders must hold no more than they
 * sent, be cut when they stop, and never keep the other clients' requests from being stored.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type ComponentProcess, killAll, startComponent } from "../../test/helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { ErrorCode } from "../lib/errors.js";

/** A loopback-free name in the allow-list stands in for a cluster-local Service. */
const TARGET = "app.uploads.test";
/** What each of the idle uploads declares: two of them are the whole default budget. */
const DECLARED = 4 * 1024 * 1024;
const BODY_IDLE_MS = 3000;
const HEADERS_TIMEOUT_MS = 1000;
const REQUEST_READ_TIMEOUT_MS = 8000;

interface Answer {
  readonly status: number;
  readonly body: string;
  /** ms from the request's first byte to the answer's. */
  readonly afterMs: number;
  /** Date.now() when the answer arrived. */
  readonly at: number;
}

/** One upload over its own connection, written by the test piece by piece. */
interface Upload {
  readonly socket: Socket;
  /** The first answer on the connection (status 0 when it closed without one). */
  readonly answer: Promise<Answer>;
  /** Resolves when the server closed the connection. */
  readonly closed: Promise<void>;
  write(data: Buffer | string): void;
}

function head(declared: number, path = "/upload"): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: producer\r\nAsync-Original-Host: ${TARGET}\r\n` +
    `Content-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n`
  );
}

function openUpload(port: number, first: Buffer | string): Upload {
  const socket = connect(port, "127.0.0.1");
  const started = Date.now();
  const chunks: Buffer[] = [];
  let settle: (answer: Answer) => void = () => undefined;
  const answer = new Promise<Answer>((resolve) => {
    settle = resolve;
  });
  const parsed = (): Answer | undefined => {
    const text = Buffer.concat(chunks).toString("latin1");
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return undefined;
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
    if (text.length < end + 4 + length) return undefined;
    const status = Number(text.slice(0, end).split(" ")[1]);
    const now = Date.now();
    return { status, body: text.slice(end + 4, end + 4 + length), afterMs: now - started, at: now };
  };
  socket.on("data", (chunk: Buffer) => {
    chunks.push(chunk);
    const a = parsed();
    if (a !== undefined) settle(a);
  });
  // A reset after the answer still tells what the client got; writes after the cut fail the same way.
  socket.on("error", () => undefined);
  const closed = new Promise<void>((resolve) =>
    socket.on("close", () => {
      settle(parsed() ?? { status: 0, body: "", afterMs: Date.now() - started, at: Date.now() });
      resolve();
    }),
  );
  socket.write(first);
  return {
    socket,
    answer,
    closed,
    write(data) {
      if (!socket.destroyed) socket.write(data);
    },
  };
}

/** One whole request of `size` bytes, sent at once. */
function upload(port: number, size: number, path = "/normal"): Promise<Answer> {
  const u = openUpload(port, Buffer.concat([Buffer.from(head(size, path)), Buffer.alloc(size, 0x61)]));
  return u.answer.finally(() => u.socket.destroy());
}

/** 50 requests with bodies from 1 KiB to 64 KiB, all at once. */
function fiftyNormal(port: number): Promise<Answer[]> {
  return Promise.all(
    Array.from({ length: 50 }, (_, i) => upload(port, 1024 + Math.floor((i * 63 * 1024) / 49))),
  );
}

/** Sends 1 KiB every `everyMs` until stopped: a body that makes progress, slowly. */
function trickle(u: Upload, everyMs: number): () => void {
  const timer = setInterval(() => u.write(Buffer.alloc(1024, 0x62)), everyMs);
  return () => clearInterval(timer);
}

async function metric(proc: ComponentProcess, name: string): Promise<number> {
  const text = await (await fetch(`${proc.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return Number(line?.split(" ").at(-1));
}

async function waitUntil(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; !(await check()); i++) {
    if (i > 100) assert.fail("timed out");
    await sleep(50);
  }
}

/** Once every connection is gone, the producer holds no body bytes and nobody waits. */
async function holdsNothing(proc: ComponentProcess): Promise<void> {
  for (let i = 0; ; i++) {
    const held = await metric(proc, "knative_async_producer_body_bytes_in_flight");
    const waiting = await metric(proc, "knative_async_producer_requests_waiting");
    if (held === 0 && waiting === 0) return;
    if (i > 50) assert.fail(`still held: ${held} bytes, ${waiting} waiting`);
    await sleep(100);
  }
}

function statuses(answers: readonly Answer[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const a of answers) counts[a.status] = (counts[a.status] ?? 0) + 1;
  return counts;
}

/** Peak resident memory of a process (VmHWM), in MB. */
function peakRssMb(pid: number): number {
  const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return Math.round(kb / 1024);
}

describe("uploads that stall, trickle or crowd in", { timeout: 120_000 }, () => {
  let redis: TestRedisServer;
  let producer: ComponentProcess;
  const env = (stream: string): Record<string, string> => ({
    REDIS_ADDRESS: redis.address,
    REDIS_STREAM_NAME: stream,
    ALLOWED_TARGET_HOSTS: TARGET,
  });

  before(async () => {
    redis = await startRedisServer();
    producer = await startComponent("producer", {
      ...env(`uploads-${randomUUID()}`),
      BODY_IDLE_TIMEOUT: `${BODY_IDLE_MS}ms`,
      HEADERS_TIMEOUT: `${HEADERS_TIMEOUT_MS}ms`,
      REQUEST_READ_TIMEOUT: `${REQUEST_READ_TIMEOUT_MS}ms`,
    });
  });

  after(async () => {
    await killAll();
    await redis?.cleanup();
  });

  test("two uploads that send only headers hold nothing: 50 others get 202 at once, the two get 408", async () => {
    const idle = [openUpload(producer.port, head(DECLARED)), openUpload(producer.port, head(DECLARED))];
    await sleep(200);
    const normal = await fiftyNormal(producer.port);
    assert.deepEqual(statuses(normal), { 202: 50 });
    const cut = await Promise.all(idle.map((u) => u.answer));
    for (const a of cut) {
      assert.equal(a.status, 408, a.body);
      assert.equal(JSON.parse(a.body).error, ErrorCode.BodyIdle);
      assert.ok(a.afterMs >= BODY_IDLE_MS - 100, `cut after ${a.afterMs} ms, before the idle time`);
      assert.ok(a.afterMs < BODY_IDLE_MS + 3000, `cut only after ${a.afterMs} ms`);
    }
    // The others were answered while the idle ones still held their connections, not after the cut.
    const lastNormal = Math.max(...normal.map((a) => a.at));
    assert.ok(lastNormal < Math.min(...cut.map((a) => a.at)), "the others waited for the cut");
    await Promise.all(idle.map((u) => u.closed));
    await holdsNothing(producer);
  });

  test("uploads that trickle hold only what they sent: 50 others get 202 while they trickle", async () => {
    const slow = [openUpload(producer.port, head(DECLARED)), openUpload(producer.port, head(DECLARED))];
    for (const u of slow) u.write(Buffer.alloc(64 * 1024, 0x62));
    const stops = slow.map((u) => trickle(u, 200));
    try {
      await sleep(300);
      const held = await metric(producer, "knative_async_producer_body_bytes_in_flight");
      assert.ok(held < 1024 * 1024, `the two hold ${held} bytes, not what they declared`);
      const normal = await fiftyNormal(producer.port);
      assert.deepEqual(statuses(normal), { 202: 50 });
      for (const u of slow) assert.equal(u.socket.destroyed, false, "a trickling upload is not cut");
    } finally {
      for (const stop of stops) stop();
    }
    // A slow sender that finishes is stored like any other.
    const [first, second] = slow as [Upload, Upload];
    second.socket.destroy();
    first.write(Buffer.alloc(DECLARED - bodyBytesWritten(first), 0x63));
    const answer = await first.answer;
    assert.equal(answer.status, 202, answer.body);
    first.socket.destroy();
    await holdsNothing(producer);
  });

  test("uploads that took the whole budget while nobody waited, then trickle, are cut so that others get 202", async () => {
    // The first is the oldest body being read: it may always finish, and its bytes are not counted
    // against the others' room. The three after it fill the budget (8 MiB) before anybody waits.
    const bursts = [3, 3, 3, 2].map((mib) => Math.floor(mib * 1024 * 1024));
    const slow: Upload[] = [];
    let sent = 0;
    for (const burst of bursts) {
      const u = openUpload(producer.port, head(DECLARED));
      u.write(Buffer.alloc(burst, 0x62));
      slow.push(u);
      sent += burst;
      await waitUntil(
        async () => (await metric(producer, "knative_async_producer_body_bytes_in_flight")) >= sent,
      );
    }
    const stops = slow.map((u) => trickle(u, 200));
    try {
      const normal = await fiftyNormal(producer.port);
      assert.deepEqual(statuses(normal), { 202: 50 });
      const answers = await Promise.all(slow.map((u) => Promise.race([u.answer, sleep(500)])));
      assert.equal(answers[0], undefined, "the oldest body being read is never cut");
      const cut = answers.filter((a) => a !== undefined);
      assert.ok(cut.length >= 1, "none of the trickling uploads was cut");
      for (const answer of cut) {
        assert.equal(answer.status, 503, answer.body);
        assert.equal(JSON.parse(answer.body).error, ErrorCode.Overloaded);
      }
    } finally {
      for (const stop of stops) stop();
      for (const u of slow) u.socket.destroy();
    }
    await holdsNothing(producer);
  });

  test(`a body that keeps trickling is cut at REQUEST_READ_TIMEOUT with 408`, async () => {
    const u = openUpload(producer.port, head(DECLARED));
    const stop = trickle(u, 200);
    try {
      const answer = await u.answer;
      assert.equal(answer.status, 408, answer.body);
      assert.equal(JSON.parse(answer.body).error, ErrorCode.RequestTimeout);
      assert.ok(answer.afterMs >= REQUEST_READ_TIMEOUT_MS - 100, `cut after ${answer.afterMs} ms`);
      assert.ok(answer.afterMs < REQUEST_READ_TIMEOUT_MS + 3000, `cut only after ${answer.afterMs} ms`);
      await u.closed;
    } finally {
      stop();
    }
    await holdsNothing(producer);
  });

  test("headers that never end are cut at HEADERS_TIMEOUT with 408", async () => {
    const u = openUpload(producer.port, "POST /upload HTTP/1.1\r\nHost: producer\r\n");
    // A header line now and then: the connection is not idle, the headers just never end.
    const timer = setInterval(() => u.write(`X-Slow-${randomUUID()}: 1\r\n`), 200);
    try {
      const answer = await u.answer;
      assert.equal(answer.status, 408, answer.body);
      assert.equal(JSON.parse(answer.body).error, ErrorCode.RequestTimeout);
      assert.ok(answer.afterMs >= HEADERS_TIMEOUT_MS - 100, `cut after ${answer.afterMs} ms`);
      assert.ok(answer.afterMs < HEADERS_TIMEOUT_MS + 2500, `cut only after ${answer.afterMs} ms`);
      await u.closed;
    } finally {
      clearInterval(timer);
    }
  });

  test("50 concurrent 1 MiB uploads with the default budget: all 202, memory bounded", async (t) => {
    const fresh = await startComponent("producer", env(`uploads-big-${randomUUID()}`));
    try {
      const size = 1024 * 1024;
      const answers = await Promise.all(Array.from({ length: 50 }, () => upload(fresh.port, size, "/big")));
      assert.deepEqual(statuses(answers), { 202: 50 });
      const peak = peakRssMb(fresh.pid);
      t.diagnostic(`producer peak RSS (VmHWM) with 50 x 1 MiB at once: ${peak} MB`);
      assert.ok(peak < 300, `peak RSS ${peak} MB`);
      await holdsNothing(fresh);
    } finally {
      await fresh.kill();
    }
  });
});

/** Body bytes written so far on an upload's connection (what follows its head). */
function bodyBytesWritten(u: Upload): number {
  return u.socket.bytesWritten - Buffer.byteLength(head(DECLARED));
}
