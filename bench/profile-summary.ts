/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, or `BENCH_PROFILE=true npm run bench`) as text: the
 * functions with the most self time, and self time by where the code lives (our sources, each package,
 * Node's internals, GC). Usage: `npx tsx bench/profile-summary.ts <file.cpuprofile> [top=25]`.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { table } from "./stats.js";

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

export interface SelfTime {
  readonly name: string;
  readonly where: string;
  readonly ms: number;
  readonly percent: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  /** Time not idle (the event loop had work), ms. */
  readonly busyMs: number;
  readonly functions: SelfTime[];
  readonly areas: SelfTime[];
  /** Our own functions (src/ or its compiled dist/) by total time: their own plus what they call. */
  readonly ownInclusive: SelfTime[];
}

/** Where a function's code lives: `src/...`, a package name, `node:...` internals, or V8's own entries. */
export function area(url: string, functionName: string): string {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return "node internals";
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (pkg) return pkg[1] as string;
  const own = /\/(src|dist|bench|test)\/(.*)$/.exec(path);
  if (own) return `${own[1]}/${own[2]}`;
  return path;
}

/** Where a function is, for people: `dist/lib/envelope.js:18`, `node:_http_server:417`. */
function location(url: string, functionName: string, lineNumber: number): string {
  if (url === "") return area(url, functionName);
  const where = url.startsWith("node:") ? url.replace(/^node:internal\//, "node:") : area(url, functionName);
  return `${where}:${lineNumber + 1}`;
}

export function summarize(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // timeDeltas[i] is the time before sample i; it is attributed to the sample it leads to, as DevTools does.
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, deltas[i] ?? 0));
  }
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, { name: string; where: string; us: number }>();
  const areas = new Map<string, number>();
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === "(idle)") idleUs += us;
    const where = area(url, functionName);
    const name = functionName === "" ? "(anonymous)" : functionName;
    const key = `${name}@${url}:${lineNumber}`;
    const entry = fn.get(key) ?? { name, where: location(url, functionName, lineNumber), us: 0 };
    entry.us += us;
    fn.set(key, entry);
    areas.set(where, (areas.get(where) ?? 0) + us);
  }
  // Total time of our own functions: each sample counts once for every distinct function on its stack.
  const inclusive = new Map<string, { name: string; where: string; us: number }>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame === undefined || !/^(src|dist)\//.test(area(frame.url, frame.functionName))) continue;
      const key = `${frame.functionName}@${frame.url}:${frame.lineNumber}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const entry = inclusive.get(key) ?? {
        name: frame.functionName === "" ? "(anonymous)" : frame.functionName,
        where: location(frame.url, frame.functionName, frame.lineNumber),
        us: 0,
      };
      entry.us += us;
      inclusive.set(key, entry);
    }
  }
  const busyUs = totalUs - idleUs;
  // Shares of the busy time: how long the process was up (and idle) says nothing about where work goes.
  const pct = (us: number) => Math.round((us / Math.max(1, busyUs)) * 1000) / 10;
  return {
    totalMs: Math.round(totalUs / 1000),
    busyMs: Math.round(busyUs / 1000),
    functions: [...fn.values()]
      .filter((f) => f.name !== "(idle)")
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, ms: Math.round(f.us / 1000), percent: pct(f.us) })),
    areas: [...areas]
      .filter(([where]) => where !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([where, us]) => ({ name: where, where, ms: Math.round(us / 1000), percent: pct(us) })),
    ownInclusive: [...inclusive.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, ms: Math.round(f.us / 1000), percent: pct(f.us) })),
  };
}

export function formatSummary(file: string, s: ProfileSummary): string {
  return [
    `${file}: ${s.totalMs} ms sampled, ${s.busyMs} ms busy (${Math.round((s.busyMs / Math.max(1, s.totalMs)) * 100)}%)`,
    "",
    table(
      ["self ms", "% of busy", "area"],
      s.areas.map((a) => [String(a.ms), a.percent.toFixed(1), a.name]),
    ),
    "",
    table(
      ["self ms", "% of busy", "function", "where"],
      s.functions.map((f) => [String(f.ms), f.percent.toFixed(1), f.name, f.where]),
    ),
    "",
    table(
      ["total ms", "% of busy", "our function (with what it calls)", "where"],
      s.ownInclusive.map((f) => [String(f.ms), f.percent.toFixed(1), f.name, f.where]),
    ),
  ].join("\n");
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, topText] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write("usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [top=25]\n");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  process.stdout.write(`${formatSummary(file, summarize(profile, topText ? Number(topText) : 25))}\n`);
}
