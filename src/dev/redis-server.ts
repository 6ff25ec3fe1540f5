/**
 * Starts a private redis-server on a free loopback port, in its own temporary directory: the all-in-one
 * mode uses it when no REDIS_ADDRESS is given, and every test suite starts its own, so suites never see
 * each other's keys and can kill or restart Redis.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../lib/net.js";

export interface RedisServerOptions {
  /** Persist with an append-only file (fsync on every write), to test restarts. */
  readonly appendOnly?: boolean;
}

export interface RedisServerProcess {
  readonly port: number;
  /** `127.0.0.1:<port>`, the REDIS_ADDRESS form. */
  readonly address: string;
  readonly dir: string;
  /** Stops the server (SIGTERM by default) and waits for it to exit; the directory is kept. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port with the same directory (and so the same AOF). */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  cleanup(): Promise<void>;
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "knative-async-redis-"));
  const port = await freePort();
  let child: ChildProcess | undefined;

  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
    ...(options.appendOnly ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
  ];

  const start = async () => {
    // Its own process group: a Ctrl-C in the terminal reaches only us, and we stop Redis last, after the
    // components have finished their work. The exit hook below still takes it down if we die early.
    child = spawn("redis-server", args, { stdio: ["ignore", "ignore", "pipe"], detached: true });
    const started = child;
    const killOnExit = () => started.kill("SIGKILL");
    process.once("exit", killOnExit);
    started.once("exit", () => process.off("exit", killOnExit));
    let stderr = "";
    child.stderr?.on("data", (chunk) => {
      stderr += chunk;
    });
    const spawnFailed = new Promise<never>((_, reject) => {
      child?.once("error", (err) => reject(new RedisServerMissingError(err)));
      child?.once("exit", (code) => reject(new Error(`redis-server exited with ${code}: ${stderr}`)));
    });
    await Promise.race([waitForPing(port), spawnFailed]);
  };

  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
    running.kill(signal);
    await exited;
  };

  await start();
  return {
    port,
    address: `127.0.0.1:${port}`,
    dir,
    stop,
    start,
    async cleanup() {
      await stop("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPing(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ping(port)) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let answer = "";
    socket.setTimeout(500);
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      answer += chunk.toString();
      if (answer.includes("\r\n")) {
        socket.destroy();
        resolve(answer.startsWith("+PONG"));
      }
    });
    socket.on("error", () => resolve(false));
    socket.on("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** redis-server is not installed (or not on PATH): says how to fix it. */
export class RedisServerMissingError extends Error {
  constructor(cause: Error) {
    super(
      "redis-server was not found on PATH. Install it (Debian/Ubuntu: sudo apt-get install redis-server; " +
        "macOS: brew install redis) or point REDIS_ADDRESS at a running Redis.",
      { cause },
    );
    this.name = "RedisServerMissingError";
  }
}
