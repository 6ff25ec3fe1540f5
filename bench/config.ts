/**
 * Benchmark settings, from BENCH_* environment variables through the same `parseEnv` the components use.
 * The defaults keep a whole `npm run bench` under about five minutes on a 2-core machine.
 */
import { z } from "zod";
import { boolSetting, type Env, intSetting, listSetting, parseEnv } from "../src/lib/config.js";

export const SCENARIOS = ["ingest", "ingest-size", "drain", "latency", "backlog", "large-body"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

const scenarioList = listSetting(SCENARIOS).transform((names, ctx) => {
  const unknown = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
  if (unknown.length > 0) {
    ctx.addIssue({ code: "custom", message: `unknown scenario ${unknown.join(", ")}; known: ${SCENARIOS}` });
    return z.NEVER;
  }
  return names as ScenarioName[];
});

const sizeList = listSetting(["1024", "65536", "1048576"]).transform((values, ctx) => {
  const sizes = values.map(Number);
  if (!sizes.every((s) => Number.isInteger(s) && s > 0)) {
    ctx.addIssue({ code: "custom", message: "must be a comma-separated list of byte counts" });
    return z.NEVER;
  }
  return sizes;
});

export const benchEnvSchema = z.object({
  /** Comma-separated scenarios to run, e.g. `ingest,drain`; all by default. */
  BENCH_ONLY: scenarioList,
  /** Seconds of load per fixed-time run (ingest, ceiling servers, the app's own ceiling). */
  BENCH_DURATION: intSetting(10, 1, 3600),
  /** Alternating rounds of ceiling and producer in the ingest scenario (figures are their medians). */
  BENCH_ROUNDS: intSetting(3, 1, 100),
  /** Seconds of unmeasured load before each fixed-time run, so the JIT is warm. */
  BENCH_WARMUP: intSetting(2, 0, 600),
  /** Connections for the ingest scenarios. */
  BENCH_CONNECTIONS: intSetting(50, 1, 10_000),
  /**
   * PRODUCER_WORKERS settings the ingest scenario runs side by side; the first is held to the targets
   * and also runs ingest-size.
   */
  BENCH_PRODUCER_WORKERS: listSetting(["auto", "1"]).refine((list) => list.length > 0, "name at least one"),
  /** Body sizes of the ingest-by-size scenario, in bytes. */
  BENCH_SIZES: sizeList,
  /** Seconds of load per size in the ingest-by-size scenario. */
  BENCH_SIZE_DURATION: intSetting(5, 1, 3600),
  /** Entries preloaded for the drain scenario. */
  BENCH_DRAIN_ENTRIES: intSetting(50_000, 1, 10_000_000),
  /** Connections for the app's own ceiling (the dispatcher's default DISPATCH_CONCURRENCY). */
  BENCH_APP_CONNECTIONS: intSetting(100, 1, 10_000),
  /** Steady request rate (req/s) and seconds of the latency scenario. */
  BENCH_LATENCY_RATE: intSetting(1000, 1, 1_000_000),
  BENCH_LATENCY_DURATION: intSetting(10, 1, 3600),
  /** Entries preloaded for the backlog-memory scenario. */
  BENCH_BACKLOG_ENTRIES: intSetting(200_000, 1, 10_000_000),
  /** How the backlog scenario's dispatcher delivers. */
  BENCH_BACKLOG_MODE: z.enum(["cloudevent", "direct"]).default("cloudevent"),
  /**
   * Seconds the backlog scenario watches the dispatcher drain; what is left is then accounted for in the
   * stream. Its memory shows within seconds, and a full drain of 200,000 would outlast the time budget.
   */
  BENCH_BACKLOG_SECONDS: intSetting(40, 1, 3600),
  /** Seconds a drain may take before the scenario gives up and reports what arrived. */
  BENCH_DRAIN_TIMEOUT: intSetting(180, 1, 3600),
  /** Entries and their body size (bytes) for the large-body drain. */
  BENCH_LARGE_ENTRIES: intSetting(40, 1, 10_000),
  BENCH_LARGE_BODY_SIZE: intSetting(6_000_000, 1, 256 * 1024 * 1024),
  /** Body size of the drain, latency and backlog requests, in bytes. */
  BENCH_BODY_SIZE: intSetting(1024, 0, 64 * 1024 * 1024),
  /** `build`: compile src/ and run that (what is deployed); `bin`: run bin/knative-async.js as it is. */
  BENCH_RUNTIME: z.enum(["build", "bin"]).default("build"),
  /**
   * Extra settings for every component process, `NAME=value` pairs separated by spaces, e.g.
   * `DISPATCH_CONCURRENCY=200`: for trying settings without editing the bench.
   */
  BENCH_COMPONENT_ENV: z
    .string()
    .default("")
    .transform((text, ctx) => {
      const env: Record<string, string> = {};
      for (const pair of text.split(/\s+/).filter((p) => p !== "")) {
        const at = pair.indexOf("=");
        if (at <= 0) {
          ctx.addIssue({ code: "custom", message: `${JSON.stringify(pair)} is not NAME=value` });
          return z.NEVER;
        }
        env[pair.slice(0, at)] = pair.slice(at + 1);
      }
      return env;
    }),
  /** Run every component with `node --cpu-prof`; the profiles go to BENCH_PROFILE_DIR. */
  BENCH_PROFILE: boolSetting(false),
  BENCH_PROFILE_DIR: z.string().default(".bench-tmp/profiles"),
  /** Also write the JSON lines to this file. */
  BENCH_OUTPUT: z.string().optional(),
});

export interface BenchConfig {
  readonly only: readonly ScenarioName[];
  readonly durationS: number;
  readonly warmupS: number;
  readonly rounds: number;
  readonly connections: number;
  readonly producerWorkers: readonly string[];
  readonly sizes: readonly number[];
  readonly sizeDurationS: number;
  readonly drainEntries: number;
  readonly appConnections: number;
  readonly latencyRate: number;
  readonly latencyDurationS: number;
  readonly backlogEntries: number;
  readonly backlogMode: "cloudevent" | "direct";
  readonly backlogSeconds: number;
  readonly drainTimeoutS: number;
  readonly largeEntries: number;
  readonly largeBodySize: number;
  readonly bodySize: number;
  readonly runtime: "build" | "bin";
  readonly componentEnv: Readonly<Record<string, string>>;
  /** Directory for CPU profiles, or undefined when not profiling. */
  readonly profileDir?: string;
  readonly output?: string;
}

export function loadBenchConfig(env: Env): BenchConfig {
  const e = parseEnv("bench", benchEnvSchema, env);
  return Object.freeze({
    only: e.BENCH_ONLY,
    durationS: e.BENCH_DURATION,
    warmupS: e.BENCH_WARMUP,
    rounds: e.BENCH_ROUNDS,
    connections: e.BENCH_CONNECTIONS,
    producerWorkers: e.BENCH_PRODUCER_WORKERS,
    sizes: e.BENCH_SIZES,
    sizeDurationS: e.BENCH_SIZE_DURATION,
    drainEntries: e.BENCH_DRAIN_ENTRIES,
    appConnections: e.BENCH_APP_CONNECTIONS,
    latencyRate: e.BENCH_LATENCY_RATE,
    latencyDurationS: e.BENCH_LATENCY_DURATION,
    backlogEntries: e.BENCH_BACKLOG_ENTRIES,
    backlogMode: e.BENCH_BACKLOG_MODE,
    backlogSeconds: e.BENCH_BACKLOG_SECONDS,
    drainTimeoutS: e.BENCH_DRAIN_TIMEOUT,
    largeEntries: e.BENCH_LARGE_ENTRIES,
    largeBodySize: e.BENCH_LARGE_BODY_SIZE,
    bodySize: e.BENCH_BODY_SIZE,
    runtime: e.BENCH_RUNTIME,
    componentEnv: e.BENCH_COMPONENT_ENV,
    ...(e.BENCH_PROFILE ? { profileDir: e.BENCH_PROFILE_DIR } : {}),
    ...(e.BENCH_OUTPUT === undefined ? {} : { output: e.BENCH_OUTPUT }),
  });
}
