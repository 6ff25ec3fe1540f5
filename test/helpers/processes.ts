/**
 * Components as real child processes (`node bin/knative-async.js <command>`), for tests that kill them
 * with real signals: each gets a free port picked beforehand (so its URL is known before it starts and
 * a replacement can take the same one), readiness is its own /readyz, its output is kept for failure
 * messages, and every process started here is killed when the test process ends.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { freePort, waitFor } from "./net.js";

const CLI = join(import.meta.dirname, "..", "..", "bin", "knative-async.js");
/** Output kept per process: enough for the last log lines in a failure message. */
const MAX_OUTPUT_CHARS = 20_000;

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ComponentProcess {
  readonly command: string;
  readonly pid: number;
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly exited: Promise<Exit>;
  running(): boolean;
  /** The last lines it wrote (stdout and stderr interleaved). */
  output(): string;
  /** Sends `signal` and waits (bounded) for the exit. */
  kill(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
}

export interface StartOptions {
  /** Port to listen on; a free one by default. */
  readonly port?: number;
  /** Path answered 200 once the component is ready; `false` to wait for nothing. */
  readonly readyPath?: string | false;
  readonly readyTimeoutMs?: number;
}

const started = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of started) if (isRunning(child)) child.kill("SIGKILL");
});

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * The environment of a child: only what Node and tsx need plus `env`, so settings of the shell that
 * runs the tests (a REDIS_ADDRESS, say) never leak in.
 */
function childEnv(env: Record<string, string>): Record<string, string> {
  const base: Record<string, string> = { LOG_LEVEL: "warn" };
  for (const name of ["PATH", "HOME", "TMPDIR"]) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  return { ...base, ...env };
}

export async function startComponent(
  command: string,
  env: Record<string, string>,
  options: StartOptions = {},
): Promise<ComponentProcess> {
  const port = options.port ?? (await freePort());
  const child = spawn(process.execPath, [CLI, command], {
    env: childEnv({ ...env, PORT: String(port) }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.add(child);
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-MAX_OUTPUT_CHARS);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<Exit>((resolve) => {
    child.once("exit", (code, signal) => {
      started.delete(child);
      resolve({ code, signal });
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const proc: ComponentProcess = {
    command,
    pid: child.pid as number,
    port,
    url,
    exited,
    running: () => isRunning(child),
    output: () => output,
    async kill(signal = "SIGTERM", timeoutMs = 20_000) {
      if (isRunning(child)) child.kill(signal);
      return withTimeout(exited, timeoutMs, `${command} (pid ${child.pid}) to exit on ${signal}`);
    },
  };

  const readyPath = options.readyPath ?? "/readyz";
  if (readyPath !== false) {
    try {
      await waitFor(
        async () => {
          if (!isRunning(child)) throw new Error(`${command} exited before it was ready`);
          return answers200(`${url}${readyPath}`);
        },
        { timeoutMs: options.readyTimeoutMs ?? 20_000, intervalMs: 50, what: `${command} ready` },
      );
    } catch (err) {
      if (isRunning(child)) child.kill("SIGKILL");
      throw new Error(`${(err as Error).message}; its output:\n${output}`);
    }
  }
  return proc;
}

/** SIGKILLs every component process this test file started that is still running. */
export async function killAll(): Promise<void> {
  const running = [...started].filter(isRunning);
  await Promise.all(
    running.map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        }),
    ),
  );
}

async function answers200(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a one-shot command (`dlq list`, say) to its end, bounded in time. */
export async function runCommand(
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<CommandResult> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: childEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (c) => {
    stdout += c;
  });
  child.stderr?.on("data", (c) => {
    stderr += c;
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      started.delete(child);
      resolve(code);
    }),
  );
  try {
    const code = await withTimeout(exited, timeoutMs, `knative-async ${args.join(" ")}`);
    return { code, stdout, stderr };
  } finally {
    if (isRunning(child)) child.kill("SIGKILL");
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
