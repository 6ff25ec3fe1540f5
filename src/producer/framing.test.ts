/**
 * Answers that say what happened, seen from a raw TCP client (node:net), as a broken or hostile client
 * sees them: bytes past the declared body, too many or too large headers. Whatever the client sends, it
 * gets one answer per request it can tell apart, and 202 exactly when the request was stored.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { decodeEnvelope } from "../lib/envelope.js";
import { ErrorCode } from "../lib/errors.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { loadProducerConfig } from "./config.js";
import { MAX_HEADER_BYTES, MAX_HEADERS } from "./connections.js";
import { type RunningProducer, startProducer } from "./producer.js";

const TARGET = "app.default.svc.cluster.local";

interface RawAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

interface Exchange {
  readonly answers: RawAnswer[];
  /** True when the server closed the connection (rather than the wait running out). */
  readonly closed: boolean;
}

/** Every HTTP answer in `data`, in order; a trailing partial answer is reported as status 0. */
function parseAnswers(data: string): RawAnswer[] {
  const answers: RawAnswer[] = [];
  let rest = data;
  while (rest.length > 0) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) return [...answers, { status: 0, headers: {}, body: rest }];
    const [statusLine = "", ...lines] = rest.slice(0, end).split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = headers["content-length"] === undefined ? rest.length : Number(headers["content-length"]);
    const body = rest.slice(end + 4, end + 4 + length);
    answers.push({ status: Number(statusLine.split(" ")[1]), headers, body });
    rest = rest.slice(end + 4 + length);
  }
  return answers;
}

/**
 * Writes `parts` to a new connection, `gapMs` apart (or each once the answer before it was read, with
 * `gapMs: "answer"`), then reads until the server closes it or `waitMs` passed since the last write.
 */
function exchange(
  port: number,
  parts: readonly (string | Buffer)[],
  options: { gapMs?: number | "answer"; waitMs?: number } = {},
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ answers: parseAnswers(Buffer.concat(chunks).toString("latin1")), closed });
    };
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("close", () => finish(true));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      // A reset after the answer was read still tells what the client got.
      if (err.code !== "ECONNRESET") reject(err);
    });
    socket.on("connect", async () => {
      const answered = (count: number) =>
        parseAnswers(Buffer.concat(chunks).toString("latin1")).filter((a) => a.status > 0).length >= count;
      for (const [i, part] of parts.entries()) {
        const gap = options.gapMs ?? 0;
        if (i > 0) {
          if (gap === "answer") await waitFor(() => answered(i), { what: `answer ${i}` });
          else await new Promise((r) => setTimeout(r, gap));
        }
        if (!socket.destroyed) socket.write(part);
      }
      timer = setTimeout(() => finish(false), options.waitMs ?? 3_000);
    });
  });
}

function asyncRequest(path: string, body: string, extraHeaders = "", declared = body.length): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: producer\r\nAsync-Original-Host: ${TARGET}\r\n` +
    `Content-Type: text/plain\r\nContent-Length: ${declared}\r\n${extraHeaders}\r\n${body}`
  );
}

describe("producer answers to broken framing and oversized headers", () => {
  let server: TestRedisServer;
  let producer: RunningProducer;
  let redis: Redis;
  const stream = `framing-${randomUUID()}`;

  before(async () => {
    server = await startRedisServer();
    producer = await startProducer(
      loadProducerConfig({
        PORT: "0",
        REDIS_ADDRESS: server.address,
        REDIS_STREAM_NAME: stream,
        REDIS_TIMEOUT: "5s",
        // These tests are about framing, not targets: the target is allowed without a registry entry.
        ALLOWED_TARGET_HOSTS: TARGET,
      }),
      { logger: createLogger("producer", { level: "silent" }) },
    );
    redis = connectRedis(parseRedisAddress(server.address), { name: "framing-test" });
  });

  after(async () => {
    await producer?.close();
    redis?.disconnect();
    await server?.cleanup();
  });

  /** The stored requests whose path is `path`. */
  async function storedAt(path: string) {
    const entries = await redis.xrange(stream, "-", "+");
    return entries
      .map(([, fields]) => decodeEnvelope(fields[1] as string))
      .filter((request) => new URL(request.url).pathname === path);
  }

  test("bytes past the declared body, in the same packet: one 400, nothing stored, connection closed", async () => {
    // Content-Length: 5, then 10 bytes: the last 5 cannot start a request.
    const sent = await exchange(producer.port, [asyncRequest("/overrun", "helloworld", "", 5)]);
    assert.equal(sent.answers.length, 1, JSON.stringify(sent.answers));
    const [answer] = sent.answers as [RawAnswer];
    assert.equal(answer.status, 400);
    assert.equal(JSON.parse(answer.body).error, ErrorCode.BadFraming);
    assert.equal(answer.headers.connection, "close");
    assert.ok(sent.closed, "the connection is closed after the answer");
    assert.equal((await storedAt("/overrun")).length, 0);
  });

  test("bytes past the body while the request is being stored: one 202, stored, connection closed", async () => {
    // Redis holds writes for a while, so the stray bytes arrive while the producer waits for the XADD.
    await redis.call("CLIENT", "PAUSE", "2000", "WRITE");
    const sent = await exchange(producer.port, [asyncRequest("/late-overrun", "hello"), "world"], {
      gapMs: 300,
    });
    assert.equal(sent.answers.length, 1, JSON.stringify(sent.answers));
    const [answer] = sent.answers as [RawAnswer];
    assert.equal(answer.status, 202);
    assert.equal(answer.headers.connection, "close");
    assert.ok(sent.closed, "the connection is closed after the answer");
    const stored = await storedAt("/late-overrun");
    assert.equal(stored.length, 1);
    assert.equal(stored[0]?.id, JSON.parse(answer.body).id);
    assert.equal(stored[0]?.body.toString(), "hello");
  });

  test("bytes that come after the 202 was written are a request of their own: 400 after the 202", async () => {
    const sent = await exchange(producer.port, [asyncRequest("/after-answer", "hello"), "world"], {
      gapMs: "answer",
    });
    assert.deepEqual(
      sent.answers.map((a) => a.status),
      [202, 400],
    );
    assert.ok(sent.closed);
    const stored = await storedAt("/after-answer");
    assert.deepEqual(
      stored.map((r) => r.id),
      [JSON.parse(sent.answers[0]?.body ?? "{}").id],
    );
  });

  test("a chunked body whose framing breaks: one 400, nothing stored", async () => {
    const head =
      `POST /bad-chunks HTTP/1.1\r\nHost: producer\r\nAsync-Original-Host: ${TARGET}\r\n` +
      "Transfer-Encoding: chunked\r\n\r\n";
    const sent = await exchange(producer.port, [`${head}5\r\nhello\r\nzz\r\n`]);
    assert.deepEqual(
      sent.answers.map((a) => a.status),
      [400],
    );
    assert.ok(sent.closed);
    assert.equal((await storedAt("/bad-chunks")).length, 0);
  });

  test("two well-framed requests in one packet are both answered 202 and stored", async () => {
    const sent = await exchange(producer.port, [
      asyncRequest("/pipelined", "one") + asyncRequest("/pipelined", "two", "Connection: close\r\n"),
    ]);
    assert.deepEqual(
      sent.answers.map((a) => a.status),
      [202, 202],
    );
    const stored = await storedAt("/pipelined");
    assert.deepEqual(stored.map((r) => r.body.toString()).sort(), ["one", "two"]);
  });

  const manyHeaders = (count: number) =>
    Array.from({ length: count }, (_, i) => `X-H${i}: ${i}\r\n`).join("");

  test(`more than ${MAX_HEADERS} header fields: 431 with its code, nothing stored`, async () => {
    const sent = await exchange(producer.port, [asyncRequest("/many-headers", "hello", manyHeaders(1500))]);
    assert.equal(sent.answers.length, 1, JSON.stringify(sent.answers));
    const [answer] = sent.answers as [RawAnswer];
    assert.equal(answer.status, 431);
    assert.equal(JSON.parse(answer.body).error, ErrorCode.HeadersTooLarge);
    assert.ok(sent.closed);
    assert.equal((await storedAt("/many-headers")).length, 0);
  });

  test(`exactly ${MAX_HEADERS} header fields are accepted and all stored`, async () => {
    // The request line's own headers count: Host, Async-Original-Host, Content-Type, Content-Length.
    const extra = MAX_HEADERS - 4;
    const sent = await exchange(producer.port, [
      asyncRequest("/max-headers", "hello", `${manyHeaders(extra - 1)}Connection: close\r\n`),
    ]);
    assert.deepEqual(
      sent.answers.map((a) => a.status),
      [202],
    );
    const [stored] = await storedAt("/max-headers");
    assert.equal(stored?.headers[`X-H${extra - 2}`]?.[0], String(extra - 2));
  });

  test(`headers larger than ${MAX_HEADER_BYTES} bytes: 431 with its code, nothing stored`, async () => {
    const big = `X-Big: ${"a".repeat(MAX_HEADER_BYTES)}\r\n`;
    const sent = await exchange(producer.port, [asyncRequest("/big-headers", "hello", big)]);
    assert.equal(sent.answers.length, 1, JSON.stringify(sent.answers));
    const [answer] = sent.answers as [RawAnswer];
    assert.equal(answer.status, 431);
    assert.equal(JSON.parse(answer.body).error, ErrorCode.HeadersTooLarge);
    assert.ok(sent.closed);
    assert.equal((await storedAt("/big-headers")).length, 0);
  });
});
