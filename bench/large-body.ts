/**
 * The large-body drain of issue 9: the dispatcher's memory must not grow with body size times
 * concurrency. 40 entries of 6 MB (alternately binary and escape-dense text) are drained at default
 * settings in both modes, and the peak RSS (VmHWM) of the dispatcher and the consumer is reported.
 */
import { appHost, type Context, STREAM } from "./components.js";
import {
  type DrainRun,
  describeDrain,
  drain,
  drainJson,
  drainRow,
  type ScenarioResult,
} from "./scenarios.js";
import { atMost, fmt, holds } from "./stats.js";
import { preloadLarge } from "./workload.js";

/** The target: under 256 MB at default settings, in both modes (the pod's limit is 512Mi). */
const RSS_TARGET_MB = 256;

export async function largeBodyDrain(ctx: Context): Promise<ScenarioResult> {
  const { largeEntries: entries, largeBodySize: size } = ctx.config;
  const runs: DrainRun[] = [];
  for (const mode of ["cloudevent", "direct"] as const) {
    process.stderr.write(`[bench] large-body: ${entries} entries of ${size} bytes, ${mode}\n`);
    runs.push(
      await drain(ctx, mode, entries, `large-body-${mode}`, {
        sampleMs: 50,
        load: (count) => preloadLarge(ctx.redis, STREAM, appHost(ctx), count, size),
      }),
    );
  }
  const [cloudevent, direct] = runs as [DrainRun, DrainRun];
  const peaks = (run: DrainRun) =>
    Object.entries(run.hwmMb)
      .filter(([name]) => name === "dispatcher" || name === "consumer")
      .map(([name, value]) => `${name} ${value}`)
      .join(", ");
  const label = `${entries} x ${size / 1e6} MB`;
  const rssTargets = runs.flatMap((run) =>
    Object.entries(run.hwmMb)
      .filter(([name]) => name === "dispatcher" || name === "consumer")
      .map(([name, value]) =>
        atMost(`${name} peak RSS, ${label} (${run.mode})`, value, RSS_TARGET_MB, " MB"),
      ),
  );
  return {
    json: {
      entries,
      bodyBytes: size,
      cloudevent: { ...drainJson(cloudevent), cpuSecondsPerEntry: cpuPerEntry(cloudevent) },
      direct: { ...drainJson(direct), cpuSecondsPerEntry: cpuPerEntry(direct) },
      lossless: cloudevent.lossless && direct.lossless,
    },
    // All of a few large entries arrive close together, so first-to-last receive says little: the rate
    // is over the whole drain, from starting the dispatcher.
    rows: runs.map((run) => ({
      ...drainRow("large-body", run, peaks(run)),
      rate: `${fmt(run.delivered / run.wallS)} msg/s (all in ${run.wallS} s)`,
    })),
    targets: [
      ...rssTargets,
      holds(`large-body (CloudEvent): all delivered`, cloudevent.lossless, describeDrain(cloudevent)),
      holds(`large-body (direct): all delivered`, direct.lossless, describeDrain(direct)),
    ],
  };
}

/** CPU seconds each process spent per entry over the whole drain (the watch spans it). */
function cpuPerEntry(run: DrainRun): Record<string, number> {
  return Object.fromEntries(
    Object.entries(run.cpu)
      .filter(([name]) => name !== "other")
      .map(([name, cores]) => [name, Math.round((cores * run.wallS * 1000) / run.entries) / 1000]),
  );
}
