/**
 * What the benchmark sends: the request bodies and headers of an async request, and the envelope the
 * producer would store for one (for preloading the stream without going through the producer).
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { DATA_FIELD } from "../src/lib/entry.js";
import { encodeEnvelope, encodeEnvelopeBuffer } from "../src/lib/envelope.js";

/** The path every benchmark request goes to. */
export const BENCH_PATH = "/bench/work";

/** A JSON body of exactly `size` bytes (at least the 10 bytes of `{"pad":""}` when size allows). */
export function makeBody(size: number): Buffer {
  const frame = '{"pad":""}';
  if (size < frame.length) return Buffer.alloc(size, 0x20);
  return Buffer.from(`{"pad":"${"x".repeat(size - frame.length)}"}`);
}

/** Headers a client sends to the producer for an async request to `targetHost`. */
export function asyncRequestHeaders(targetHost: string): Record<string, string> {
  return {
    "content-type": "application/json",
    prefer: "respond-async",
    "async-original-host": targetHost,
  };
}

/**
 * Stores `count` envelopes in the stream as the producer would (pipelined XADD, `batch` per round
 * trip), addressed to `targetHost`, and resolves with their ids.
 */
export async function preload(
  redis: Redis,
  stream: string,
  targetHost: string,
  count: number,
  bodySize: number,
  batch = 1000,
): Promise<string[]> {
  const body = makeBody(bodySize);
  const ids: string[] = [];
  for (let done = 0; done < count; ) {
    const pipeline = redis.pipeline();
    const n = Math.min(batch, count - done);
    for (let i = 0; i < n; i++) {
      const id = randomUUID();
      ids.push(id);
      const envelope = encodeEnvelope({
        id,
        url: `http://${targetHost}${BENCH_PATH}`,
        method: "POST",
        headers: {
          Host: ["async-producer.knative-serving.svc"],
          "User-Agent": ["bench"],
          "Content-Type": ["application/json"],
          "Content-Length": [String(body.length)],
          Prefer: ["respond-async"],
          "Async-Original-Host": [targetHost],
        },
        body,
        acceptedAt: Date.now(),
      });
      pipeline.xadd(stream, "*", DATA_FIELD, envelope);
    }
    const results = await pipeline.exec();
    const failed = results?.find(([err]) => err !== null);
    if (failed) throw failed[0] as Error;
    done += n;
  }
  return ids;
}

/**
 * A text body of `size` bytes that JSON escapes densely (quotes, backslashes, newlines, a control
 * character) and that holds multi-byte characters: the costly kind of text to carry in an envelope.
 */
export function makeEscapedText(size: number, seed: number): Buffer {
  const unit = Buffer.from(`{"n":${seed},"s":"a \\"quoted\\" line\\n\tñandú 中文 🚀 \u0001"}\n`);
  const body = Buffer.alloc(size, 0x20);
  for (let at = 0; at + unit.length <= size; at += unit.length) unit.copy(body, at);
  return body;
}

/**
 * Stores `count` large envelopes one at a time, alternately a random binary body (base64 in the
 * envelope) and an escape-dense text body, each of `bodySize` bytes; resolves with their ids.
 */
export async function preloadLarge(
  redis: Redis,
  stream: string,
  targetHost: string,
  count: number,
  bodySize: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = randomUUID();
    ids.push(id);
    const binary = i % 2 === 0;
    const body = binary ? randomBytes(bodySize) : makeEscapedText(bodySize, i);
    const envelope = encodeEnvelopeBuffer({
      id,
      url: `http://${targetHost}${BENCH_PATH}`,
      method: "POST",
      headers: { "Content-Type": [binary ? "application/octet-stream" : "application/json"] },
      body,
      acceptedAt: Date.now(),
    });
    await redis.xadd(stream, "*", DATA_FIELD, envelope);
  }
  return ids;
}
