/**
 * `npm run bench`: the performance benchmark of issue 5. Starts its own redis-server, a no-op target
 * app, the load generator and the components on loopback, each as its own process, runs the scenarios
 * (BENCH_ONLY picks some), and prints one JSON line per scenario and then a table of the figures and of
 * the targets. See bench/README.md for the settings. It is not a test and never gates one.
 */
import { appendFileSync, readFileSync } from "node:fs";
import { availableParallelism, loadavg, release, totalmem } from "node:os";
import { startRedisServer } from "../src/dev/redis-server.js";
import { ConfigError } from "../src/lib/config.js";
import { connectRedis, parseRedisAddress } from "../src/lib/redis.js";
import { type Context, stopAll } from "./components.js";
import { type BenchConfig, loadBenchConfig, type ScenarioName } from "./config.js";
import { largeBodyDrain } from "./large-body.js";
import { cpuSpeedIndex, mb, prepareCli, ROOT, startHelper } from "./processes.js";
import {
  backlog,
  drainScenario,
  ingest,
  ingestBySize,
  latency,
  type Row,
  type ScenarioResult,
} from "./scenarios.js";
import { type TargetCheck, table } from "./stats.js";

const RUNNERS: Record<ScenarioName, (ctx: Context) => Promise<ScenarioResult>> = {
  ingest,
  "ingest-size": ingestBySize,
  drain: drainScenario,
  latency,
  backlog,
  "large-body": largeBodyDrain,
};

function machineFacts(): Record<string, unknown> {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown";
  const pkg = JSON.parse(readFileSync(`${ROOT}/node_modules/autocannon/package.json`, "utf8")) as {
    version: string;
  };
  return {
    cores: availableParallelism(),
    cpuModel: model,
    memoryMb: mb(totalmem()),
    kernel: release(),
    node: process.version,
    autocannon: pkg.version,
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
    speedIndexAtStart: cpuSpeedIndex(500),
  };
}

function emit(config: BenchConfig, line: Record<string, unknown>): void {
  const text = JSON.stringify(line);
  process.stdout.write(`${text}\n`);
  if (config.output !== undefined) appendFileSync(config.output, `${text}\n`);
}

async function main(): Promise<void> {
  let config: BenchConfig;
  try {
    config = loadBenchConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`bench: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  // Each child process registers an exit hook that kills it; there are more than ten at times.
  process.setMaxListeners(50);
  // Ctrl-C: run the exit hooks (they kill Redis and the components) instead of dying at once.
  process.once("SIGINT", () => process.exit(130));

  process.stderr.write(`[bench] preparing the components (${config.runtime})\n`);
  const { cli, describe } = prepareCli(config.runtime);
  const redisServer = await startRedisServer();
  const redis = connectRedis(parseRedisAddress(redisServer.address), { name: "bench" });
  const info = await redis.info("server");
  const redisPid = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
  const redisVersion = /^redis_version:(\S+)/m.exec(info)?.[1] ?? "unknown";
  const { helper: app, ready: appReady } = await startHelper<{ port: number }>("app.ts");
  const { helper: load } = await startHelper<{ pid: number }>("load-worker.ts");
  const ctx: Context = {
    config,
    cli,
    redisAddress: redisServer.address,
    redisPid,
    redis,
    app,
    appPort: appReady.port,
    load,
    loadPid: load.pid,
    running: new Set(),
  };

  const facts = { ...machineFacts(), redis: redisVersion, components: describe };
  process.stderr.write(`[bench] ${JSON.stringify(facts)}\n`);
  emit(config, { run: facts, settings: config });

  const rows: Row[] = [];
  const targets: TargetCheck[] = [];
  try {
    for (const name of config.only) {
      const started = performance.now();
      // Other work on the machine skews every figure; the load average says how much there was.
      const loadAverageBefore = Math.round((loadavg()[0] ?? 0) * 100) / 100;
      const speedIndexBefore = cpuSpeedIndex();
      try {
        const result = await RUNNERS[name](ctx);
        const seconds = Math.round((performance.now() - started) / 100) / 10;
        emit(config, {
          scenario: name,
          ...result.json,
          targets: result.targets,
          seconds,
          loadAverageBefore,
          speedIndexBefore,
          speedIndexAfter: cpuSpeedIndex(),
        });
        rows.push(...result.rows);
        targets.push(...result.targets);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        emit(config, { scenario: name, error: message });
        process.stderr.write(`[bench] ${name} failed: ${message}\n`);
        await stopAll(ctx);
        await redis.flushall().catch(() => undefined);
      }
    }
  } finally {
    await stopAll(ctx);
    await Promise.all([app.stop(), load.stop()]);
    redis.disconnect();
    await redisServer.cleanup();
  }

  process.stdout.write(
    `\n${table(
      ["scenario", "run", "rate", "p50 ms", "p99 ms", "max ms", "peak RSS MB", "CPU (cores)", "lossless"],
      rows.map((r) => [r.scenario, r.run, r.rate, r.p50, r.p99, r.max, r.rss, r.cpu, r.lossless]),
    )}\n\n${table(
      ["target (issue 5)", "measured", "met"],
      targets.map((t) => [t.target, t.measured, t.met ? "yes" : "**no**"]),
    )}\n`,
  );
  if (config.profileDir !== undefined) {
    process.stdout.write(
      `\nCPU profiles in ${config.profileDir}; summarise one with: npx tsx bench/profile-summary.ts <file>\n`,
    );
  }
}

await main();
