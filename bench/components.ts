/**
 * The shared state of a run (Redis, the target app, the load generator) and starting the components
 * against it, each as its own process configured by env, as deployed.
 */
import type { Redis } from "ioredis";
import { streamKeys } from "../src/lib/keys.js";
import { freePort } from "../src/lib/net.js";
import { AsyncServicesWriter } from "../src/lib/registry.js";
import type { AppStats } from "./app.js";
import type { BenchConfig } from "./config.js";
import type { LoadRequest, LoadResult, PacedRequest, PacedResult } from "./load-worker.js";
import { type Helper, type Proc, sleep, startComponent } from "./processes.js";

export const STREAM = "bench";
const KEYS = streamKeys(STREAM);
export const GROUP = "knative-async";

export interface Context {
  readonly config: BenchConfig;
  /** The components' entry point (`prepareCli`). */
  readonly cli: string;
  readonly redisAddress: string;
  readonly redisPid: number;
  /** For preloading and inspecting; not used while a scenario measures. */
  readonly redis: Redis;
  readonly app: Helper;
  readonly appPort: number;
  readonly load: Helper;
  readonly loadPid: number;
  /** Running components, stopped by `stopAll` if a scenario fails half-way. */
  readonly running: Set<Proc>;
}

/** `host:port` of the target app, as the producer is told to allow it. */
export function appHost(ctx: Context): string {
  return `127.0.0.1:${ctx.appPort}`;
}

export interface Started {
  readonly proc: Proc;
  readonly port: number;
}

async function start(
  ctx: Context,
  command: string,
  label: string,
  env: Record<string, string>,
): Promise<Started> {
  const port = await freePort();
  const proc = await startComponent(command, port, {
    cli: ctx.cli,
    env: { REDIS_ADDRESS: ctx.redisAddress, REDIS_STREAM_NAME: STREAM, ...env, ...ctx.config.componentEnv },
    label,
    ...(ctx.config.profileDir === undefined ? {} : { profileDir: ctx.config.profileDir }),
  });
  ctx.running.add(proc);
  proc.child.once("exit", () => ctx.running.delete(proc));
  return { proc, port };
}

/**
 * The ingest scenarios' target: no app behind it (the producer only stores), published in the async
 * services registry as the controller would, so the producer takes it through its usual lookup.
 */
export const INGEST_TARGET = "bench-app.bench.svc";

/** `workers` is PRODUCER_WORKERS; unset, the producer's default (one process). */
export async function startProducer(ctx: Context, label: string, workers?: string): Promise<Started> {
  // Published again at every start: scenarios flush Redis between runs.
  await new AsyncServicesWriter(ctx.redis, KEYS).publish("bench/bench-app", {
    hosts: [INGEST_TARGET],
    policy: {},
  });
  return start(ctx, "producer", label, {
    ALLOWED_TARGET_HOSTS: appHost(ctx),
    ...(workers === undefined ? {} : { PRODUCER_WORKERS: workers }),
  });
}

/** What the dispatcher and consumer share as deployed: the Secret events are signed with, and the rule. */
const SIGNING = { EVENT_SIGNING_SECRETS: "bench-signing-secret" };

export function startConsumer(ctx: Context, label: string): Promise<Started> {
  return start(ctx, "consumer", label, { ALLOWED_TARGET_HOSTS: appHost(ctx), ...SIGNING });
}

export function startDispatcher(
  ctx: Context,
  label: string,
  mode: "cloudevent" | "direct",
  consumerPort?: number,
): Promise<Started> {
  return start(ctx, "dispatcher", label, {
    DISPATCH_MODE: mode,
    DISPATCHER_NAME: `bench-${label}`,
    ALLOWED_TARGET_HOSTS: appHost(ctx),
    ...SIGNING,
    ...(consumerPort === undefined ? {} : { K_SINK: `http://127.0.0.1:${consumerPort}/` }),
  });
}

export async function stopAll(ctx: Context): Promise<void> {
  await Promise.all([...ctx.running].map((p) => p.stop()));
}

export function autocannon(ctx: Context, request: LoadRequest): Promise<LoadResult> {
  return ctx.load.call<LoadResult>({ cmd: "autocannon", request }, (request.durationS + 60) * 1000);
}

export function paced(ctx: Context, request: PacedRequest): Promise<PacedResult> {
  return ctx.load.call<PacedResult>({ cmd: "paced", request }, (request.durationS + 120) * 1000);
}

export function appStats(ctx: Context): Promise<AppStats> {
  return ctx.app.call<AppStats>({ cmd: "stats" });
}

export function resetApp(ctx: Context, times = false): Promise<unknown> {
  return ctx.app.call({ cmd: "reset", times });
}

/** Total entries ever added to the stream (XINFO STREAM `entries-added`, Redis 7), 0 without a stream. */
export async function entriesAdded(ctx: Context): Promise<number> {
  try {
    const info = (await ctx.redis.xinfo("STREAM", STREAM)) as unknown[];
    const at = info.indexOf("entries-added");
    return at < 0 ? Number.NaN : Number(info[at + 1]);
  } catch {
    return 0;
  }
}

/** What is left in Redis after a drain: all zero when every entry was delivered and acknowledged. */
export interface Leftovers {
  readonly stream: number;
  readonly pending: number;
  readonly retryScheduled: number;
  readonly deadLettered: number;
}

export async function leftovers(ctx: Context): Promise<Leftovers> {
  const [stream, pending, retryScheduled, deadLettered] = await Promise.all([
    ctx.redis.xlen(STREAM),
    (ctx.redis.xpending(STREAM, GROUP) as Promise<[number, ...unknown[]]>).then(
      (r) => Number(r[0]),
      () => 0,
    ),
    ctx.redis.zcard(KEYS.retrySchedule),
    ctx.redis.xlen(KEYS.deadLetter),
  ]);
  return { stream, pending, retryScheduled, deadLettered };
}

/** Waits until the stream has no entries and none pending (the last acks land after the app's answers). */
export async function waitSettled(ctx: Context, timeoutMs = 15_000): Promise<Leftovers> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await leftovers(ctx);
    if ((left.stream === 0 && left.pending === 0) || Date.now() > deadline) return left;
    await sleep(100);
  }
}

/**
 * Waits until the app has seen `count` distinct request ids, or `timeoutMs` passed, or it stopped
 * receiving for `stallMs` (something is stuck; waiting longer would only burn the time budget).
 */
export async function waitDelivered(
  ctx: Context,
  count: number,
  timeoutMs: number,
  stallMs = 30_000,
): Promise<AppStats & { complete: boolean }> {
  const deadline = Date.now() + timeoutMs;
  let lastDistinct = -1;
  let lastProgress = Date.now();
  for (;;) {
    const stats = await appStats(ctx);
    if (stats.distinct >= count) return { ...stats, complete: true };
    if (stats.distinct !== lastDistinct) {
      lastDistinct = stats.distinct;
      lastProgress = Date.now();
    }
    if (Date.now() > deadline || Date.now() - lastProgress > stallMs) return { ...stats, complete: false };
    await sleep(50);
  }
}

/** Calls per Redis command since the last `CONFIG RESETSTAT` (INFO commandstats), by lower-case name. */
export async function redisCommandCalls(ctx: Context): Promise<Record<string, number>> {
  const info = await ctx.redis.info("commandstats");
  const calls: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    calls[match[1] as string] = Number(match[2]);
  }
  return calls;
}

/** Removes everything from Redis between scenarios. */
export async function flush(ctx: Context): Promise<void> {
  await ctx.redis.flushall();
}
