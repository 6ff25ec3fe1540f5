/**
 * The pipeline of the fault tests, every part a real process: producer -> Redis stream -> dispatcher ->
 * consumer -> app. The app is a recording HTTP server in the test process, so a test can script its
 * answers and see exactly what reached it and when. Each helper passes the env names the components'
 * config.ts files read.
 */

import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { Agent, request } from "undici";
import { streamKeys } from "../../src/lib/keys.js";
import { connectRedis, parseRedisAddress } from "../../src/lib/redis.js";
import type { Received, RecordingServer } from "../helpers/http.js";
import { freePort } from "../helpers/net.js";
import { type ComponentProcess, startComponent } from "../helpers/processes.js";
import type { TestRedisServer } from "../helpers/redis-server.js";
import { SIGNING_ENV } from "../helpers/signing.js";
import { LOOPBACK_TARGET_ENV } from "../helpers/targets.js";

export function startProducer(
  redis: TestRedisServer,
  stream: string,
  app: RecordingServer,
  env: Record<string, string> = {},
): Promise<ComponentProcess> {
  return startComponent("producer", {
    REDIS_ADDRESS: redis.address,
    REDIS_STREAM_NAME: stream,
    // The app is a loopback server, not a cluster-local Service: allow it explicitly.
    ALLOWED_TARGET_HOSTS: `127.0.0.1:${app.port}`,
    ...env,
  });
}

export function startConsumer(
  env: Record<string, string> = {},
  options: { port?: number } = {},
): Promise<ComponentProcess> {
  return startComponent("consumer", { ...LOOPBACK_TARGET_ENV, ...SIGNING_ENV, ...env }, options);
}

export function startDispatcher(
  redis: TestRedisServer,
  stream: string,
  /** The consumer's URL (K_SINK). */
  sink: string,
  name: string,
  env: Record<string, string> = {},
): Promise<ComponentProcess> {
  return startComponent("dispatcher", dispatcherEnv(redis, stream, sink, name, env));
}

function dispatcherEnv(
  redis: TestRedisServer,
  stream: string,
  sink: string,
  name: string,
  env: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_ADDRESS: redis.address,
    REDIS_STREAM_NAME: stream,
    K_SINK: `${sink}/`,
    DISPATCHER_NAME: name,
    // Short, so that entries of a killed dispatcher are taken over quickly.
    CLAIM_IDLE: "2s",
    MIN_BACKOFF: "100ms",
    MAX_BACKOFF: "500ms",
    ...LOOPBACK_TARGET_ENV,
    ...SIGNING_ENV,
    ...env,
  };
}

export interface Pipeline {
  readonly stream: string;
  readonly producer: ComponentProcess;
  readonly consumer: ComponentProcess;
  readonly dispatcher: ComponentProcess;
  /** The env the `knative-async dlq` CLI needs for this pipeline's stream. */
  readonly dlqEnv: Record<string, string>;
}

/** Starts producer, consumer and dispatcher for a new stream, side by side, and waits until all are ready. */
export async function startPipeline(
  redis: TestRedisServer,
  app: RecordingServer,
  env: {
    producer?: Record<string, string>;
    consumer?: Record<string, string>;
    dispatcher?: Record<string, string>;
  } = {},
): Promise<Pipeline> {
  const stream = `s-${randomUUID().slice(0, 8)}`;
  // The consumer's port is chosen first, so the dispatcher can start at the same time knowing its K_SINK.
  const consumerPort = await freePort();
  const [producer, consumer, dispatcher] = await Promise.all([
    startProducer(redis, stream, app, env.producer),
    startComponent(
      "consumer",
      { ...LOOPBACK_TARGET_ENV, ...SIGNING_ENV, ...env.consumer },
      { port: consumerPort },
    ),
    startComponent(
      "dispatcher",
      dispatcherEnv(redis, stream, `http://127.0.0.1:${consumerPort}`, "d-1", env.dispatcher),
    ),
  ]);
  return {
    stream,
    producer,
    consumer,
    dispatcher,
    dlqEnv: { REDIS_ADDRESS: redis.address, REDIS_STREAM_NAME: stream },
  };
}

export function redisClient(redis: TestRedisServer): Redis {
  return connectRedis(parseRedisAddress(redis.address), { name: "fault-test" });
}

/** One keep-alive pool for everything the tests send to the producer. */
const clientAgent = new Agent({ connections: 64, pipelining: 1 });

export interface Sent {
  readonly status: number;
  /** Async-Request-Id of the answer, when it has one. */
  readonly id: string | undefined;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** Sends an async request through the producer to `path` on the app. */
export async function sendAsync(
  producer: ComponentProcess,
  app: RecordingServer,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Sent> {
  const response = await request(`${producer.url}${path}`, {
    method: (init.method ?? "POST") as "POST",
    dispatcher: clientAgent,
    headers: {
      "async-original-host": `127.0.0.1:${app.port}`,
      prefer: "respond-async",
      ...init.headers,
    },
    ...(init.body === undefined ? {} : { body: init.body }),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const body = await response.body.text();
  const id = response.headers["async-request-id"];
  return {
    status: response.statusCode,
    id: typeof id === "string" ? id : undefined,
    headers: response.headers,
    body,
  };
}

export function requestIdOf(received: Received): string | undefined {
  return received.headersDistinct["async-request-id"]?.[0];
}

export function attemptOf(received: Received): number {
  return Number(received.headersDistinct["async-attempt"]?.[0]);
}

/** How many times the app received each request id. */
export function deliveriesById(received: readonly Received[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of received) {
    const id = requestIdOf(r);
    if (id !== undefined) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/** A sample of a Prometheus metric from a component's /metrics; 0 when the series does not exist yet. */
export async function metricValue(
  component: ComponentProcess,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const response = await fetch(`${component.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await response.text();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name} `) && !line.startsWith(`${name}{`)) continue;
    const labelText = line.startsWith(`${name}{`) ? line.slice(name.length + 1, line.indexOf("}")) : "";
    if (wanted.every((w) => labelText.split(",").includes(w))) return Number(line.split(" ").at(-1));
  }
  return 0;
}

/** Keys the pipeline leaves behind for one stream: all empty once everything is delivered. */
export async function leftovers(redis: Redis, stream: string, group = "knative-async") {
  const keys = streamKeys(stream);
  const [length, pending, scheduled, dead] = await Promise.all([
    redis.xlen(keys.stream),
    redis.xpending(keys.stream, group) as Promise<[number, ...unknown[]]>,
    redis.zcard(keys.retrySchedule),
    redis.xlen(keys.deadLetter),
  ]);
  return { stream: length, pending: Number(pending[0]), retryScheduled: scheduled, deadLettered: dead };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
