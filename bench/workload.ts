/**
 * What the benchmark sends: the request bodies and headers of an async request, and the envelope the
 * producer would store for one (for preloading the stream without going through the producer).
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { DATA_FIELD } from "../src/lib/entry.js";
import { encodeEnvelope } from "../src/lib/envelope.js";

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
