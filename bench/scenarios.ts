/**
 * The scenarios of issue 5. Each starts the components it needs as separate processes, measures, checks
 * that nothing was lost (accepted == delivered, or stored for the ingest ones), stops them, and returns
 * its figures, its table rows and its targets.
 */
import {
  appHost,
  appStats,
  autocannon,
  type Context,
  entriesAdded,
  flush,
  INGEST_TARGET,
  type Leftovers,
  leftovers,
  paced,
  redisCommandCalls,
  resetApp,
  STREAM,
  type Started,
  startConsumer,
  startDispatcher,
  startProducer,
  waitDelivered,
  waitSettled,
} from "./components.js";
import type { LoadRequest, LoadResult } from "./load-worker.js";
import { ProcWatch, round, sleep, startHelper } from "./processes.js";
import { atLeast, atMost, fmt, holds, percentile, type TargetCheck } from "./stats.js";
import { asyncRequestHeaders, BENCH_PATH, preload } from "./workload.js";

/** One line of the results table. */
export interface Row {
  readonly scenario: string;
  readonly run: string;
  readonly rate: string;
  readonly p50: string;
  readonly p99: string;
  readonly max: string;
  readonly rss: string;
  readonly cpu: string;
  readonly lossless: string;
}

export interface ScenarioResult {
  readonly json: Record<string, unknown>;
  readonly rows: Row[];
  readonly targets: TargetCheck[];
}

/** The issue's targets. */
const TARGET = {
  ingestRps: 18_000,
  ingestP99Ms: 10,
  ingestRatio: 0.6,
  drainCloudEvent: 5_000,
  drainDirect: 8_000,
  latencyP50Ms: 3,
  latencyP99Ms: 20,
  producerRssMb: 150,
  dispatcherRssMb: 200,
} as const;

function cpuText(cpu: Record<string, number>): string {
  return Object.entries(cpu)
    .map(([name, cores]) => `${name} ${cores.toFixed(2)}`)
    .join(", ");
}

function loadRow(scenario: string, run: string, r: LoadResult, extra: Partial<Row> = {}): Row {
  return {
    scenario,
    run,
    rate: `${fmt(r.rps)} req/s`,
    p50: fmt(r.latencyMs.p50),
    p99: fmt(r.latencyMs.p99),
    max: fmt(r.latencyMs.max),
    rss: "",
    cpu: "",
    lossless: "",
    ...extra,
  };
}

async function warmUp(ctx: Context, request: Omit<LoadRequest, "durationS">): Promise<void> {
  if (ctx.config.warmupS === 0) return;
  await autocannon(ctx, { ...request, durationS: ctx.config.warmupS });
  // Let the requests cut off at the end of the warm-up finish before anything is counted.
  await sleep(300);
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/**
 * Runs closed-loop load against the producer and counts what reached the stream: every 202 must be
 * stored. Requests cut off when the load stops may be stored without their 202 being counted, so
 * `stored` may exceed `accepted` by at most the number of connections.
 */
async function measureProducer(ctx: Context, producer: Started, request: LoadRequest) {
  const before = await settledEntriesAdded(ctx);
  const watch = new ProcWatch({ producer: producer.proc.pid, redis: ctx.redisPid, load: ctx.loadPid });
  const result = await autocannon(ctx, request);
  watch.stop();
  const stored = (await settledEntriesAdded(ctx)) - before;
  const lossless = stored >= result.ok && stored - result.ok <= request.connections;
  const peakRssMb = Math.max(watch.peakRssMb().producer ?? 0, watch.hwmMb().producer ?? 0);
  return { result, stored, lossless, cpu: watch.cpu(), peakRssMb };
}

/**
 * `entries-added` once it stops moving: requests cut off when a load run ends (the warm-up's too) may
 * still be written for a while, large ones especially.
 */
async function settledEntriesAdded(ctx: Context, timeoutMs = 15_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = await entriesAdded(ctx);
  for (;;) {
    await sleep(300);
    const now = await entriesAdded(ctx);
    if (now === last || Date.now() > deadline) return now;
    last = now;
  }
}

/** `1 KiB`, `64 KiB`, `1 MiB`. */
function sizeLabel(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/** The median of a non-empty list. */
function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

/**
 * The producer and the ceiling server in alternating rounds: this machine's speed drifts by a third from
 * one minute to the next (other tenants of the host), and rounds side by side see the same drift, so the
 * ratio of each pair is steadier than one long run of each. Figures are medians over the rounds.
 */
export async function ingest(ctx: Context): Promise<ScenarioResult> {
  const { config } = ctx;
  const body = {
    bodySize: 1024,
    connections: config.connections,
    headers: asyncRequestHeaders(INGEST_TARGET),
  };
  await flush(ctx);
  const { helper: ceiling, ready } = await startHelper<{ port: number }>("ceiling.ts");
  type Measured = Awaited<ReturnType<typeof measureProducer>>;
  const rounds: {
    ceiling: LoadResult;
    ceilingCpu: Record<string, number>;
    /** The first PRODUCER_WORKERS setting's run: the one held to the targets. */
    producer: Measured;
    /** One run per PRODUCER_WORKERS setting, in the order configured. */
    producers: Measured[];
  }[] = [];
  const producers: Started[] = [];
  try {
    for (const workers of config.producerWorkers) {
      producers.push(await startProducer(ctx, `ingest-producer-${workers}`, workers));
    }
    const ceilingRequest = { ...body, url: `http://127.0.0.1:${ready.port}${BENCH_PATH}` };
    const producerRequest = (p: Started) => ({ ...body, url: `http://127.0.0.1:${p.port}${BENCH_PATH}` });
    await warmUp(ctx, ceilingRequest);
    for (const p of producers) await warmUp(ctx, producerRequest(p));
    for (let round = 1; round <= config.rounds; round++) {
      log(
        `ingest: round ${round}/${config.rounds}, ceiling then producer (PRODUCER_WORKERS ${config.producerWorkers.join(", ")}), ${config.durationS} s each at ${config.connections} connections`,
      );
      const watch = new ProcWatch({ ceiling: ceiling.pid, load: ctx.loadPid });
      const ceilingResult = await autocannon(ctx, { ...ceilingRequest, durationS: config.durationS });
      watch.stop();
      const measured: Measured[] = [];
      for (const p of producers) {
        await sleep(300);
        measured.push(await measureProducer(ctx, p, { ...producerRequest(p), durationS: config.durationS }));
        // Keeps Redis's memory (and so its speed) the same for every run.
        await ctx.redis.xtrim(STREAM, "MAXLEN", 0);
      }
      rounds.push({
        ceiling: ceilingResult,
        ceilingCpu: watch.cpu(),
        producer: measured[0] as Measured,
        producers: measured,
      });
    }
  } finally {
    await Promise.all(producers.map((p) => p.proc.stop()));
    await ceiling.stop();
    await flush(ctx);
  }

  const otherSettings = config.producerWorkers.slice(1).map((workers, i) => {
    const runs = rounds.map((r) => r.producers[i + 1] as Measured);
    return {
      workers,
      rps: Math.round(median(runs.map((m) => m.result.rps))),
      ratio: round(median(rounds.map((r, j) => (runs[j] as Measured).result.rps / r.ceiling.rps)), 3),
      p50Ms: median(runs.map((m) => m.result.latencyMs.p50)),
      p99Ms: median(runs.map((m) => m.result.latencyMs.p99)),
      maxMs: Math.max(...runs.map((m) => m.result.latencyMs.max)),
      peakRssMb: Math.max(...runs.map((m) => m.peakRssMb)),
      cpuUsPerRequest: Math.round(median(runs.map((m) => ((m.cpu.producer ?? 0) * 1e6) / m.result.rps))),
      lossless: runs.every((m) => m.lossless && m.result.non2xx + m.result.errors === 0),
      roundsRps: runs.map((m) => Math.round(m.result.rps)),
      cpu: runs[Math.floor(runs.length / 2)]?.cpu ?? {},
    };
  });

  const producerRps = median(rounds.map((r) => r.producer.result.rps));
  const ceilingRps = median(rounds.map((r) => r.ceiling.rps));
  const ratio = median(rounds.map((r) => r.producer.result.rps / r.ceiling.rps));
  const p50 = median(rounds.map((r) => r.producer.result.latencyMs.p50));
  const p99 = median(rounds.map((r) => r.producer.result.latencyMs.p99));
  const max = Math.max(...rounds.map((r) => r.producer.result.latencyMs.max));
  const peakRssMb = Math.max(...rounds.map((r) => r.producer.peakRssMb));
  const accepted = rounds.reduce((n, r) => n + r.producer.result.ok, 0);
  const stored = rounds.reduce((n, r) => n + r.producer.stored, 0);
  const lossless = rounds.every((r) => r.producer.lossless);
  const errors = rounds.reduce((n, r) => n + r.producer.result.non2xx + r.producer.result.errors, 0);
  const middle = [...rounds].sort((a, b) => a.producer.result.rps - b.producer.result.rps)[
    Math.floor(rounds.length / 2)
  ];
  const roundsText = (pick: (r: (typeof rounds)[number]) => number) =>
    rounds.map((r) => fmt(pick(r))).join(" / ");
  return {
    json: {
      connections: config.connections,
      bodyBytes: 1024,
      rounds: rounds.map((r) => ({
        producer: summarize(r.producer.result),
        ceiling: summarize(r.ceiling),
        ratio: round(r.producer.result.rps / r.ceiling.rps, 3),
        accepted: r.producer.result.ok,
        stored: r.producer.stored,
        cpuCores: { producerRun: r.producer.cpu, ceilingRun: r.ceilingCpu },
      })),
      producerWorkers: config.producerWorkers[0],
      producer: { rps: Math.round(producerRps), p50Ms: p50, p99Ms: p99, maxMs: max },
      otherProducers: otherSettings,
      ceiling: { rps: Math.round(ceilingRps) },
      ratio: round(ratio, 3),
      accepted,
      stored,
      lossless,
      producerPeakRssMb: peakRssMb,
      producerCpuUsPerRequest: Math.round(
        median(rounds.map((r) => ((r.producer.cpu.producer ?? 0) * 1e6) / r.producer.result.rps)),
      ),
      ceilingCpuUsPerRequest: Math.round(
        median(rounds.map((r) => ((r.ceilingCpu.ceiling ?? 0) * 1e6) / r.ceiling.rps)),
      ),
    },
    rows: [
      {
        scenario: "ingest",
        run: `ceiling (node:http, no Redis); rounds ${roundsText((r) => r.ceiling.rps)}`,
        rate: `${fmt(ceilingRps)} req/s`,
        p50: fmt(median(rounds.map((r) => r.ceiling.latencyMs.p50))),
        p99: fmt(median(rounds.map((r) => r.ceiling.latencyMs.p99))),
        max: fmt(Math.max(...rounds.map((r) => r.ceiling.latencyMs.max))),
        rss: "",
        cpu: middle ? cpuText(middle.ceilingCpu) : "",
        lossless: "",
      },
      {
        scenario: "ingest",
        run: `producer (PRODUCER_WORKERS=${config.producerWorkers[0]}); rounds ${roundsText((r) => r.producer.result.rps)}`,
        rate: `${fmt(producerRps)} req/s`,
        p50: fmt(p50),
        p99: fmt(p99),
        max: fmt(max),
        rss: String(peakRssMb),
        cpu: middle ? cpuText(middle.producer.cpu) : "",
        lossless: `${lossless} (${accepted} accepted, ${stored} stored)`,
      },
      ...otherSettings.map((o) => ({
        scenario: "ingest",
        run: `producer (PRODUCER_WORKERS=${o.workers}); rounds ${o.roundsRps.join(" / ")}; ratio ${o.ratio}`,
        rate: `${fmt(o.rps)} req/s`,
        p50: fmt(o.p50Ms),
        p99: fmt(o.p99Ms),
        max: fmt(o.maxMs),
        rss: String(o.peakRssMb),
        cpu: cpuText(o.cpu),
        lossless: String(o.lossless),
      })),
    ],
    targets: [
      atLeast("ingest req/s (1 KiB, 50 conn)", producerRps, TARGET.ingestRps),
      atMost("ingest p99", p99, TARGET.ingestP99Ms, " ms"),
      atLeast("ingest ratio to ceiling", ratio, TARGET.ingestRatio),
      atMost("producer peak RSS under ingest", peakRssMb, TARGET.producerRssMb, " MB"),
      holds(
        "ingest: every 202 stored",
        lossless && errors === 0,
        `${accepted} accepted, ${stored} stored, ${errors} non-2xx or errors`,
      ),
    ],
  };
}

function summarize(r: LoadResult) {
  return {
    rps: Math.round(r.rps),
    p50Ms: r.latencyMs.p50,
    p99Ms: r.latencyMs.p99,
    maxMs: r.latencyMs.max,
    ok: r.ok,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes: r.statusCodes,
  };
}

export async function ingestBySize(ctx: Context): Promise<ScenarioResult> {
  const { config } = ctx;
  const runs: Record<string, unknown>[] = [];
  const rows: Row[] = [];
  const targets: TargetCheck[] = [];
  for (const size of config.sizes) {
    log(
      `ingest-size: ${sizeLabel(size)} bodies, ${config.sizeDurationS} s at ${config.connections} connections`,
    );
    await flush(ctx);
    // A fresh producer per size, so its peak RSS (VmHWM) belongs to this size alone.
    const producer = await startProducer(
      ctx,
      `ingest-size-${size}-producer`,
      config.producerWorkers[0] as string,
    );
    // Large bodies would fill Redis's memory within seconds; trimming keeps `entries-added` counting.
    const trim = () => ctx.redis.xtrim(STREAM, "MAXLEN", 0).catch(() => undefined);
    const trimmer = size >= 64 * 1024 ? setInterval(trim, 500) : undefined;
    let measured: Awaited<ReturnType<typeof measureProducer>>;
    try {
      const request = {
        url: `http://127.0.0.1:${producer.port}${BENCH_PATH}`,
        headers: asyncRequestHeaders(INGEST_TARGET),
        bodySize: size,
        connections: config.connections,
      };
      await warmUp(ctx, { ...request });
      measured = await measureProducer(ctx, producer, { ...request, durationS: config.sizeDurationS });
    } finally {
      clearInterval(trimmer);
      await producer.proc.stop();
      await flush(ctx);
    }
    const { result, stored, lossless, cpu, peakRssMb } = measured;
    const mbPerS = (result.ok * size) / result.durationS / 1e6;
    runs.push({
      bodyBytes: size,
      ...summarize(result),
      mbPerS: round(mbPerS, 1),
      producerPeakRssMb: peakRssMb,
      accepted: result.ok,
      stored,
      lossless,
      cpuCores: cpu,
    });
    rows.push(
      loadRow("ingest-size", `${sizeLabel(size)} (${fmt(mbPerS)} MB/s)`, result, {
        rss: String(peakRssMb),
        cpu: cpuText(cpu),
        lossless: `${lossless} (${result.ok}/${stored})`,
      }),
    );
    targets.push(
      atMost(`producer peak RSS, ${sizeLabel(size)} bodies`, peakRssMb, TARGET.producerRssMb, " MB"),
      holds(
        `ingest ${sizeLabel(size)}: every 202 stored`,
        lossless && result.non2xx === 0 && result.errors === 0,
        `${result.ok} accepted, ${stored} stored, ${result.non2xx} non-2xx, ${result.errors} errors`,
      ),
    );
  }
  return { json: { connections: config.connections, runs }, rows, targets };
}

export interface DrainRun {
  readonly mode: "cloudevent" | "direct";
  readonly entries: number;
  readonly delivered: number;
  readonly duplicates: number;
  /** All entries arrived within the time allowed (when not, `left.stream` holds the rest). */
  readonly complete: boolean;
  /** Entries per second from the app's first to its last receive. */
  readonly rate: number;
  /** From starting the dispatcher process to the last receive, seconds (includes its start-up). */
  readonly wallS: number;
  readonly preloadS: number;
  readonly left: Leftovers;
  readonly lossless: boolean;
  readonly cpu: Record<string, number>;
  readonly peakRssMb: Record<string, number>;
  /** VmHWM of each process at the end: its peak RSS since it started, spikes between samples included. */
  readonly hwmMb: Record<string, number>;
  /** Redis commands per 1,000 delivered entries while draining: how well the dispatcher batches. */
  readonly redisCallsPer1000: Record<string, number>;
}

/**
 * Preloads `entries` envelopes (BENCH_BODY_SIZE bodies unless `load` writes others), starts a dispatcher
 * on them and times until the app has all of them, or until `windowS` passed. Then stops the dispatcher
 * (gracefully: in-flight deliveries finish and are acknowledged) and accounts for every entry: delivered
 * to the app, or still in the stream, with nothing pending, scheduled for a retry or dead-lettered.
 */
export async function drain(
  ctx: Context,
  mode: "cloudevent" | "direct",
  entries: number,
  label: string,
  options: { sampleMs?: number; windowS?: number; load?: (count: number) => Promise<unknown> } = {},
): Promise<DrainRun> {
  await flush(ctx);
  const consumer = mode === "cloudevent" ? await startConsumer(ctx, `${label}-consumer`) : undefined;
  try {
    const preloadStarted = performance.now();
    const load =
      options.load ?? ((count) => preload(ctx.redis, STREAM, appHost(ctx), count, ctx.config.bodySize));
    await load(entries);
    const preloadS = (performance.now() - preloadStarted) / 1000;
    await resetApp(ctx);
    await ctx.redis.config("RESETSTAT");
    const spawnedNs = process.hrtime.bigint();
    const dispatcher = await startDispatcher(ctx, `${label}-dispatcher`, mode, consumer?.port);
    const pids: Record<string, number> = {
      dispatcher: dispatcher.proc.pid,
      app: ctx.app.pid,
      redis: ctx.redisPid,
    };
    if (consumer) pids.consumer = consumer.proc.pid;
    const watch = new ProcWatch(pids, options.sampleMs ?? 200);
    let stats: Awaited<ReturnType<typeof waitDelivered>>;
    let calls: Record<string, number>;
    try {
      stats = await waitDelivered(ctx, entries, (options.windowS ?? ctx.config.drainTimeoutS) * 1000);
      watch.stop();
      calls = await redisCommandCalls(ctx);
      if (stats.complete) await waitSettled(ctx);
    } finally {
      watch.stop();
      await dispatcher.proc.stop();
    }
    const left = await leftovers(ctx);
    const final = await appStats(ctx);
    const spanS = Number(BigInt(stats.lastNs) - BigInt(stats.firstNs)) / 1e9;
    const lossless =
      final.distinct + left.stream === entries &&
      left.pending === 0 &&
      left.retryScheduled === 0 &&
      left.deadLettered === 0;
    return {
      mode,
      entries,
      delivered: final.distinct,
      duplicates: final.received - final.anonymous - final.distinct,
      complete: stats.complete,
      rate: spanS > 0 ? stats.distinct / spanS : Number.NaN,
      wallS: round(Number(BigInt(stats.lastNs) - spawnedNs) / 1e9, 2),
      preloadS: round(preloadS, 2),
      left,
      lossless,
      cpu: watch.cpu(),
      peakRssMb: watch.peakRssMb(),
      hwmMb: watch.hwmMb(),
      redisCallsPer1000: Object.fromEntries(
        Object.entries(calls)
          .map(([name, n]) => [name, Math.round((n * 1000) / Math.max(1, stats.distinct))] as const)
          .filter(([name, per1000]) => per1000 > 0 && !/^(info|config|client|hello)/.test(name)),
      ),
    };
  } finally {
    await consumer?.proc.stop();
    await flush(ctx);
  }
}

export function drainRow(scenario: string, run: DrainRun, rss: string): Row {
  return {
    scenario,
    run: `${run.mode === "cloudevent" ? "dispatcher + consumer (CloudEvent)" : "dispatcher direct"}, ${run.entries} entries`,
    rate: `${fmt(run.rate)} msg/s`,
    p50: "",
    p99: "",
    max: "",
    rss,
    cpu: cpuText(run.cpu),
    lossless: `${run.lossless} (${run.delivered}/${run.entries}${run.complete ? "" : ` + ${run.left.stream} still queued`}${run.duplicates > 0 ? `, ${run.duplicates} dup` : ""})`,
  };
}

/** CPU per delivered entry for each process, µs: where a drain's time goes, whatever the machine's speed. */
function cpuPerMessageUs(run: DrainRun): Record<string, number> {
  return Object.fromEntries(
    Object.entries(run.cpu)
      .filter(([name]) => name !== "other")
      .map(([name, cores]) => [name, Math.round((cores * 1e6) / run.rate)]),
  );
}

export function drainJson(run: DrainRun): Record<string, unknown> {
  return { ...run, rate: Math.round(run.rate), cpuUsPerMessage: cpuPerMessageUs(run) };
}

export async function drainScenario(ctx: Context): Promise<ScenarioResult> {
  const { config } = ctx;
  log(`drain: the app's own ceiling, ${config.durationS} s at ${config.appConnections} connections`);
  await resetApp(ctx);
  const appRequest = {
    url: `http://127.0.0.1:${ctx.appPort}${BENCH_PATH}`,
    headers: { "content-type": "application/json", prefer: "respond-sync" },
    bodySize: config.bodySize,
    connections: config.appConnections,
  };
  await warmUp(ctx, appRequest);
  const watch = new ProcWatch({ app: ctx.app.pid, load: ctx.loadPid });
  const ceiling = await autocannon(ctx, { ...appRequest, durationS: config.durationS });
  watch.stop();
  const ceilingCpu = watch.cpu();

  log(`drain: ${config.drainEntries} entries through dispatcher + consumer (CloudEvent)`);
  const cloudevent = await drain(ctx, "cloudevent", config.drainEntries, "drain-cloudevent");
  log(`drain: ${config.drainEntries} entries through the dispatcher's direct mode`);
  const direct = await drain(ctx, "direct", config.drainEntries, "drain-direct");

  const rssText = (run: DrainRun) =>
    Object.entries(run.peakRssMb)
      .filter(([name]) => name === "dispatcher" || name === "consumer")
      .map(([name, value]) => `${name} ${value}`)
      .join(", ");
  return {
    json: {
      bodyBytes: config.bodySize,
      appCeiling: { ...summarize(ceiling), connections: config.appConnections, cpuCores: ceilingCpu },
      cloudevent: drainJson(cloudevent),
      direct: drainJson(direct),
      lossless: cloudevent.lossless && direct.lossless,
    },
    rows: [
      loadRow("drain", `app's own ceiling (${config.appConnections} conn, no queue)`, ceiling, {
        cpu: cpuText(ceilingCpu),
      }),
      drainRow("drain", cloudevent, rssText(cloudevent)),
      drainRow("drain", direct, rssText(direct)),
    ],
    targets: [
      atLeast("drain via CloudEvent path", cloudevent.rate, TARGET.drainCloudEvent, " msg/s"),
      atLeast("drain via direct path", direct.rate, TARGET.drainDirect, " msg/s"),
      holds("drain (CloudEvent): all delivered", cloudevent.lossless, describeDrain(cloudevent)),
      holds("drain (direct): all delivered", direct.lossless, describeDrain(direct)),
    ],
  };
}

export function describeDrain(run: DrainRun): string {
  const left = run.left;
  return `${run.delivered}/${run.entries} delivered${run.complete ? "" : " in the time allowed"}, left: stream ${left.stream}, pending ${left.pending}, retry ${left.retryScheduled}, dlq ${left.deadLettered}`;
}

interface LatencyRun {
  readonly mode: "cloudevent" | "direct";
  readonly rate: number;
  readonly sent: number;
  readonly accepted: number;
  readonly delivered: number;
  readonly missing: number;
  readonly lossless: boolean;
  /** App receive time minus the client's 202 time, ms (negative: the app had it before the 202 arrived). */
  readonly deliveryMs: { p50: number; p99: number; max: number; min: number };
  /** Client-side time to the 202. */
  readonly answerMs: { p50: number; p99: number; max: number };
  readonly cpu: Record<string, number>;
}

async function latencyRun(ctx: Context, mode: "cloudevent" | "direct"): Promise<LatencyRun> {
  const { config } = ctx;
  await flush(ctx);
  const started: Started[] = [];
  try {
    const consumer = mode === "cloudevent" ? await startConsumer(ctx, `latency-${mode}-consumer`) : undefined;
    if (consumer) started.push(consumer);
    const dispatcher = await startDispatcher(ctx, `latency-${mode}-dispatcher`, mode, consumer?.port);
    started.push(dispatcher);
    const producer = await startProducer(ctx, `latency-${mode}-producer`);
    started.push(producer);
    const request = {
      url: `http://127.0.0.1:${producer.port}${BENCH_PATH}`,
      headers: asyncRequestHeaders(appHost(ctx)),
      bodySize: config.bodySize,
      connections: 64,
    };
    // A short warm-up at the same rate, so the first measured requests do not pay for the JIT.
    await resetApp(ctx);
    if (config.warmupS > 0) {
      const warm = await paced(ctx, { ...request, rate: config.latencyRate, durationS: config.warmupS });
      await waitDelivered(ctx, warm.ok, 30_000, 10_000);
    }
    await resetApp(ctx, true);
    const pids: Record<string, number> = {
      producer: producer.proc.pid,
      dispatcher: dispatcher.proc.pid,
      app: ctx.app.pid,
      redis: ctx.redisPid,
      load: ctx.loadPid,
    };
    if (consumer) pids.consumer = consumer.proc.pid;
    const watch = new ProcWatch(pids);
    const result = await paced(ctx, {
      ...request,
      rate: config.latencyRate,
      durationS: config.latencyDurationS,
    });
    await waitDelivered(ctx, result.ok, 60_000, 15_000);
    watch.stop();
    const times = new Map(await ctx.app.call<[string, string][]>({ cmd: "times" }));
    const deltas: number[] = [];
    let missing = 0;
    for (const [id, answeredNs] of result.accepted) {
      const receivedNs = times.get(id);
      if (receivedNs === undefined) missing++;
      else deltas.push(Number(BigInt(receivedNs) - BigInt(answeredNs)) / 1e6);
    }
    deltas.sort((a, b) => a - b);
    return {
      mode,
      rate: round(result.sent / result.durationS, 1),
      sent: result.sent,
      accepted: result.ok,
      delivered: deltas.length,
      missing,
      lossless: missing === 0 && result.failed === 0,
      deliveryMs: {
        p50: round(percentile(deltas, 50), 2),
        p99: round(percentile(deltas, 99), 2),
        max: round(deltas.at(-1) ?? Number.NaN, 2),
        min: round(deltas[0] ?? Number.NaN, 2),
      },
      answerMs: {
        p50: round(result.answerMs.p50, 2),
        p99: round(result.answerMs.p99, 2),
        max: round(result.answerMs.max, 2),
      },
      cpu: watch.cpu(),
    };
  } finally {
    for (const s of started.reverse()) await s.proc.stop();
    await flush(ctx);
  }
}

export async function latency(ctx: Context): Promise<ScenarioResult> {
  const { config } = ctx;
  const runs: LatencyRun[] = [];
  for (const mode of ["cloudevent", "direct"] as const) {
    log(`latency: ${config.latencyRate} req/s for ${config.latencyDurationS} s, ${mode}`);
    runs.push(await latencyRun(ctx, mode));
  }
  const [cloudevent, direct] = runs as [LatencyRun, LatencyRun];
  const row = (run: LatencyRun): Row => ({
    scenario: "latency",
    run: `202 -> app, ${run.mode === "cloudevent" ? "CloudEvent" : "direct"} (202 itself: p50 ${fmt(run.answerMs.p50)}, p99 ${fmt(run.answerMs.p99)} ms)`,
    rate: `${fmt(run.rate)} req/s`,
    p50: fmt(run.deliveryMs.p50),
    p99: fmt(run.deliveryMs.p99),
    max: fmt(run.deliveryMs.max),
    rss: "",
    cpu: cpuText(run.cpu),
    lossless: `${run.lossless} (${run.delivered}/${run.accepted})`,
  });
  return {
    json: { cloudevent, direct, lossless: cloudevent.lossless && direct.lossless },
    rows: runs.map(row),
    targets: [
      atMost("latency p50, 202 -> app (CloudEvent)", cloudevent.deliveryMs.p50, TARGET.latencyP50Ms, " ms"),
      atMost("latency p99, 202 -> app (CloudEvent)", cloudevent.deliveryMs.p99, TARGET.latencyP99Ms, " ms"),
      atMost("latency p50, 202 -> app (direct)", direct.deliveryMs.p50, TARGET.latencyP50Ms, " ms"),
      atMost("latency p99, 202 -> app (direct)", direct.deliveryMs.p99, TARGET.latencyP99Ms, " ms"),
      holds(
        "latency: every 202 delivered",
        cloudevent.lossless && direct.lossless,
        runs.map((r) => `${r.mode} ${r.delivered}/${r.accepted} (${r.sent} sent)`).join(", "),
      ),
    ],
  };
}

export async function backlog(ctx: Context): Promise<ScenarioResult> {
  const { config } = ctx;
  const mode = config.backlogMode;
  log(`backlog: ${config.backlogEntries} entries, dispatcher ${mode}`);
  const run = await drain(ctx, mode, config.backlogEntries, `backlog-${mode}`, {
    sampleMs: 100,
    windowS: config.backlogSeconds,
  });
  const rss = run.peakRssMb.dispatcher ?? Number.NaN;
  return {
    json: { ...drainJson(run), dispatcherPeakRssMb: rss },
    rows: [{ ...drainRow("backlog", run, `dispatcher ${rss}`), scenario: "backlog" }],
    targets: [
      atMost(`dispatcher RSS, ${config.backlogEntries}-entry backlog`, rss, TARGET.dispatcherRssMb, " MB"),
      holds("backlog: every entry delivered or still queued", run.lossless, describeDrain(run)),
    ],
  };
}
