/**
 * The processes of a benchmark run: the components as deployed (`node bin/knative-async.js <command>`,
 * one process each), the bench's own helper servers and load generator (TypeScript children with an IPC
 * channel), and what /proc says about each of them (RSS, peak RSS, CPU time).
 */
import { type ChildProcess, fork, spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "undici";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Lines of a child's output kept to explain a failure. */
const TAIL_LINES = 40;

/**
 * The entry point the components run from. `build` (the default) compiles src/ into .bench-tmp/dist, as
 * `npm run build` would for an image, and runs that: what is deployed, without tsx's loader thread
 * (about 30 MB of RSS per process) and always from the current sources. `bin` runs
 * `bin/knative-async.js`, which prefers an existing dist/ and falls back to tsx.
 */
export function prepareCli(runtime: "build" | "bin"): { cli: string; describe: string } {
  if (runtime === "bin") {
    const compiled = existsSync(join(ROOT, "dist", "cli.js"));
    return {
      cli: join(ROOT, "bin", "knative-async.js"),
      describe: `bin/knative-async.js (${compiled ? "existing dist/" : "sources through tsx"})`,
    };
  }
  const out = join(ROOT, ".bench-tmp", "dist");
  rmSync(out, { recursive: true, force: true });
  // --noCheck: type errors are the tests' business; the bench only needs the emitted JavaScript.
  const tsc = spawnSync(
    process.execPath,
    [
      join(ROOT, "node_modules", "typescript", "bin", "tsc"),
      "-p",
      "tsconfig.build.json",
      "--outDir",
      out,
      "--noCheck",
    ],
    { cwd: ROOT, encoding: "utf8" },
  );
  if (!existsSync(join(out, "cli.js"))) {
    throw new Error(`compiling src/ failed:\n${tsc.stdout}${tsc.stderr}`);
  }
  copyAssets(join(ROOT, "src"), out);
  return { cli: join(out, "cli.js"), describe: "src/ compiled by tsc into .bench-tmp/dist" };
}

/** The Lua scripts are loaded from beside the compiled modules, as scripts/copy-assets.mjs does for dist/. */
function copyAssets(from: string, to: string): void {
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".lua")) cpSync(path, join(to, relative(from, path)));
    }
  };
  walk(from);
}

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** The last lines the process wrote (stdout and stderr), for error messages. */
  tail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

function track(name: string, child: ChildProcess): Proc {
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) {
      if (line.trim() === "") continue;
      lines.push(line.length > 500 ? `${line.slice(0, 500)}…` : line);
      if (lines.length > TAIL_LINES) lines.shift();
    }
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  child.once("exit", () => process.off("exit", killOnExit));
  if (child.pid === undefined) throw new Error(`${name} did not start`);
  return {
    name,
    pid: child.pid,
    child,
    tail: () => lines.join("\n"),
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface ComponentOptions {
  /** The CLI entry point from `prepareCli`. */
  readonly cli: string;
  /** Component env (PORT, REDIS_ADDRESS, ...). Only PATH and HOME are passed on from our own env. */
  readonly env: Record<string, string>;
  /** When set, the process runs with `--cpu-prof` and writes `<label>.cpuprofile` here. */
  readonly profileDir?: string;
  /** Names the profile file; defaults to the command. */
  readonly label?: string;
}

/** Starts `knative-async <command>` and waits until GET /readyz on `port` answers 200. */
export async function startComponent(
  command: string,
  port: number,
  options: ComponentOptions,
): Promise<Proc> {
  const args: string[] = [];
  if (options.profileDir !== undefined) {
    mkdirSync(options.profileDir, { recursive: true });
    args.push(
      "--cpu-prof",
      "--cpu-prof-dir",
      options.profileDir,
      "--cpu-prof-name",
      `${options.label ?? command}.cpuprofile`,
    );
  }
  const child = spawn(process.execPath, [...args, options.cli, command], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      LOG_LEVEL: "warn",
      ...options.env,
      PORT: String(port),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc = track(command, child);
  await waitReady(proc, `http://127.0.0.1:${port}/readyz`);
  return proc;
}

async function waitReady(proc: Proc, url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) {
      throw new Error(`${proc.name} exited with ${proc.child.exitCode}:\n${proc.tail()}`);
    }
    try {
      const res = await request(url, { headersTimeout: 1000, bodyTimeout: 1000 });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // Not listening yet.
    }
    await sleep(50);
  }
  await proc.stop(1000);
  throw new Error(`${proc.name} was not ready within ${timeoutMs} ms:\n${proc.tail()}`);
}

/** A bench helper (a TypeScript file under bench/) as a child process with an IPC channel. */
export interface Helper extends Proc {
  /** Sends a message and resolves with the helper's answer to it. */
  call<T>(message: Record<string, unknown>, timeoutMs?: number): Promise<T>;
}

interface Envelope {
  readonly callId: number;
  readonly result?: unknown;
  readonly error?: string;
}

/**
 * Forks `bench/<file>` through tsx and waits for its `{ready: ...}` message, which it sends once
 * listening; resolves with the helper and that message.
 */
export async function startHelper<R>(
  file: string,
  env: Record<string, string> = {},
): Promise<{ helper: Helper; ready: R }> {
  const child = fork(join(ROOT, "bench", file), [], {
    cwd: ROOT,
    execArgv: ["--import", "tsx"],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    serialization: "advanced",
  });
  const proc = track(file, child);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const readyMessage = new Promise<R>((resolveReady, rejectReady) => {
    const onExit = (code: number | null) => {
      const err = new Error(`${file} exited with ${code}:\n${proc.tail()}`);
      rejectReady(err);
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    };
    child.once("exit", onExit);
    child.on("message", (message: { ready?: R } & Partial<Envelope>) => {
      if (message.ready !== undefined) {
        resolveReady(message.ready);
        return;
      }
      const waiter = message.callId === undefined ? undefined : pending.get(message.callId);
      if (waiter === undefined) return;
      pending.delete(message.callId as number);
      if (message.error !== undefined) waiter.reject(new Error(`${file}: ${message.error}`));
      else waiter.resolve(message.result);
    });
  });
  const helper: Helper = {
    ...proc,
    call<T>(message: Record<string, unknown>, timeoutMs = 600_000) {
      const callId = nextId++;
      return new Promise<T>((resolveCall, rejectCall) => {
        const timer = setTimeout(() => {
          pending.delete(callId);
          rejectCall(new Error(`${file} did not answer ${JSON.stringify(message.cmd)} in ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(callId, {
          resolve: (v) => {
            clearTimeout(timer);
            resolveCall(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            rejectCall(e);
          },
        });
        child.send({ ...message, callId });
      });
    },
  };
  const ready = await Promise.race([
    readyMessage,
    sleep(30_000).then(() => {
      throw new Error(`${file} did not start within 30 s:\n${proc.tail()}`);
    }),
  ]);
  return { helper, ready };
}

/**
 * The helper side of `call`: answers each message with `handle`'s result (or its error message), and
 * tells the parent it is ready with `ready`. Exits when the parent goes away.
 */
export function serveCalls(ready: unknown, handle: (message: Record<string, unknown>) => unknown): void {
  if (process.send === undefined)
    throw new Error("run this file through the bench (it needs an IPC channel)");
  const send = process.send.bind(process);
  process.on("message", (message: Record<string, unknown>) => {
    const callId = message.callId;
    Promise.resolve()
      .then(() => handle(message))
      .then(
        (result) => send({ callId, result }),
        (err: unknown) => send({ callId, error: err instanceof Error ? err.message : String(err) }),
      );
  });
  process.on("disconnect", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
  send({ ready });
}

/** What /proc/<pid>/status and /proc/<pid>/stat say about a process. */
export interface ProcSample {
  /** Resident set size now, bytes. */
  readonly rss: number;
  /** Peak resident set size since the process started (VmHWM), bytes. */
  readonly hwm: number;
  /** User plus system CPU time so far, seconds. */
  readonly cpuS: number;
}

/** Linux's USER_HZ, the unit of utime/stime in /proc/<pid>/stat; 100 on every mainstream kernel. */
const CLOCK_TICKS = 100;

export function sampleProc(pid: number): ProcSample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return parseProc(status, stat);
  } catch {
    return undefined;
  }
}

export function parseProc(status: string, stat: string): ProcSample {
  const kb = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  };
  // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state field (field 3, index 0 here).
  const ticks = Number(rest[11]) + Number(rest[12]);
  return { rss: kb("VmRSS"), hwm: kb("VmHWM"), cpuS: ticks / CLOCK_TICKS };
}

/** CPU time the whole machine spent busy (all cores, everything but idle and iowait), seconds. */
export function machineBusyS(): number {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] as string;
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    return (total - idle) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

/** Process ids by parent process id, from /proc/<pid>/stat (field 4). */
export function childrenByParent(): Map<number, number[]> {
  const out = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = out.get(ppid);
      if (list) list.push(Number(entry));
      else out.set(ppid, [Number(entry)]);
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/**
 * A process with all its descendants (a producer's cluster workers), summed: RSS and VmHWM count pages
 * shared between them (the node binary) once per process, so the sum is an upper bound.
 */
export function sampleTree(
  pid: number,
  children: ReadonlyMap<number, readonly number[]>,
): ProcSample | undefined {
  const root = sampleProc(pid);
  if (root === undefined) return undefined;
  let { rss, hwm, cpuS } = root;
  for (const child of children.get(pid) ?? []) {
    const s = sampleTree(child, children);
    if (s === undefined) continue;
    rss += s.rss;
    hwm += s.hwm;
    cpuS += s.cpuS;
  }
  return { rss, hwm, cpuS };
}

/**
 * Samples processes (each with its descendants) every `intervalMs` while a scenario runs: peak RSS seen and CPU used (as a fraction
 * of one core) between start and stop, and how much CPU everything else on the machine took meanwhile
 * (`other`), which says how far other work skewed the figures.
 */
export class ProcWatch {
  private readonly first = new Map<string, ProcSample>();
  private readonly last = new Map<string, ProcSample>();
  private readonly peakRss = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private readonly startedAt = performance.now();
  private readonly busyAtStart = machineBusyS();
  private busyAtStop: number | undefined;
  private stoppedAt: number | undefined;

  constructor(
    private readonly pids: Readonly<Record<string, number>>,
    intervalMs = 200,
  ) {
    this.sample();
    for (const [name, s] of this.last) this.first.set(name, s);
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    const children = childrenByParent();
    for (const [name, pid] of Object.entries(this.pids)) {
      const s = sampleTree(pid, children);
      if (s === undefined) continue;
      this.last.set(name, s);
      this.peakRss.set(name, Math.max(this.peakRss.get(name) ?? 0, s.rss));
    }
  }

  stop(): void {
    if (this.stoppedAt !== undefined) return;
    this.sample();
    clearInterval(this.timer);
    this.stoppedAt = performance.now();
    this.busyAtStop = machineBusyS();
  }

  /**
   * CPU used per process during the watch, in cores (1.0 = one core busy all the time), and `other`:
   * the rest of the machine's busy time (the bench itself, other programs).
   */
  cpu(): Record<string, number> {
    const seconds = ((this.stoppedAt ?? performance.now()) - this.startedAt) / 1000;
    const out: Record<string, number> = {};
    if (seconds <= 0) return out;
    let ours = 0;
    for (const [name, last] of this.last) {
      const first = this.first.get(name);
      if (first === undefined) continue;
      ours += last.cpuS - first.cpuS;
      out[name] = round((last.cpuS - first.cpuS) / seconds, 2);
    }
    const machine = (this.busyAtStop ?? machineBusyS()) - this.busyAtStart;
    if (Number.isFinite(machine)) out.other = round(Math.max(0, machine - ours) / seconds, 2);
    return out;
  }

  /** Peak RSS per process seen while watching, in MB. */
  peakRssMb(): Record<string, number> {
    return Object.fromEntries([...this.peakRss].map(([name, bytes]) => [name, mb(bytes)]));
  }

  /** VmHWM per process now (peak since the process started), in MB. */
  hwmMb(): Record<string, number> {
    return Object.fromEntries([...this.last].map(([name, s]) => [name, mb(s.hwm)]));
  }
}

/**
 * How fast this machine runs JavaScript right now: JSON round trips of a request-sized document per ms
 * over `ms`. The speed of a shared VM drifts with what its neighbours do; this makes the drift visible
 * next to each scenario's figures.
 */
export function cpuSpeedIndex(ms = 200): number {
  const doc = {
    id: "0f8fad5b-d9cb-469f-a165-70867728950e",
    header: { "Content-Type": ["application/json"], Prefer: ["respond-async"] },
    body: "x".repeat(1024),
  };
  let rounds = 0;
  const started = performance.now();
  while (performance.now() - started < ms) {
    for (let i = 0; i < 50; i++) JSON.parse(JSON.stringify(doc));
    rounds += 50;
  }
  return Math.round(rounds / (performance.now() - started));
}

export function mb(bytes: number): number {
  return round(bytes / (1024 * 1024), 1);
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}
