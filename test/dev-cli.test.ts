/**
 * The newcomer's experience, as a real process: `knative-async dev` starts its own Redis, prints what to
 * try, shows each async request queued and delivered, and Ctrl-C (SIGINT to the whole process group,
 * as a terminal sends it) lets the in-flight delivery finish and stops everything it started.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createConnection } from "node:net";
import { test } from "node:test";
import { freePort, waitFor } from "./helpers/net.js";

function portIsOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

test("knative-async dev: 202 at once, delivered later, Ctrl-C stops everything cleanly", async () => {
  const port = await freePort();
  const env = { ...process.env };
  delete env.REDIS_ADDRESS;
  const child = spawn(
    process.execPath,
    ["bin/knative-async.js", "dev", "--port", String(port), "--sleep", "1500ms"],
    {
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c) => {
    stdout += c;
  });
  child.stderr.on("data", (c) => {
    stderr += c;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    await waitFor(() => stdout.includes("Ctrl-C stops everything"), {
      timeoutMs: 30_000,
      what: `startup (${stderr})`,
    });
    assert.match(
      stdout,
      new RegExp(`curl -i -H 'Prefer: respond-async' http://127\\.0\\.0\\.1:${port}/hello`),
    );
    const redisPort = Number(/redis\s+127\.0\.0\.1:(\d+)\s+started here/.exec(stdout)?.[1]);
    assert.ok(redisPort > 0, "it started its own Redis");

    const started = Date.now();
    const response = await fetch(`http://127.0.0.1:${port}/hello?from=test`, {
      method: "POST",
      headers: { prefer: "respond-async" },
      body: "hi",
    });
    assert.equal(response.status, 202);
    assert.ok(Date.now() - started < 1000, "answered before the app's 1.5 s sleep");
    const id = response.headers.get("async-request-id") as string;
    await waitFor(() => stdout.includes(`queued       ${id}  POST /hello?from=test  (2 bytes)`), {
      what: "queued line",
    });

    // Ctrl-C while the delivery is in flight: it still finishes.
    await waitFor(() => stdout.includes(`queued       ${id}`), { what: "queued" });
    await new Promise((r) => setTimeout(r, 300));
    process.kill(-(child.pid as number), "SIGINT");
    const code = await Promise.race([
      exited,
      new Promise((r) => setTimeout(() => r("timeout"), 20_000).unref()),
    ]);
    assert.equal(code, 0, `exit code (stderr: ${stderr})`);
    assert.match(stdout, new RegExp(`delivered    ${id}  200 in \\d+ ms`));
    assert.equal(await portIsOpen(redisPort), false, "its Redis is stopped");
    assert.equal(await portIsOpen(port), false, "the gateway is closed");
  } finally {
    if (child.exitCode === null) process.kill(-(child.pid as number), "SIGKILL");
  }
});

test("knative-async dev explains a busy port in one line", async () => {
  const port = await freePort();
  const { createServer } = await import("node:net");
  const blocker = createServer().listen(port, "127.0.0.1");
  await new Promise((r) => blocker.once("listening", r));
  try {
    const child = spawn(process.execPath, ["bin/knative-async.js", "dev", "--port", String(port)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`port ${port} is already in use; choose another with --port`));
    assert.equal(stderr.trim().split("\n").length, 1);
  } finally {
    blocker.close();
  }
});

test("knative-async dev says how to install redis-server when it is missing", async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: "/nonexistent" };
  delete env.REDIS_ADDRESS;
  const child = spawn(process.execPath, ["bin/knative-async.js", "dev", "--port", "0"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c) => {
    stderr += c;
  });
  const code = await new Promise((resolve) => child.once("exit", resolve));
  assert.equal(code, 1);
  assert.match(
    stderr,
    /redis-server was not found on PATH\. Install it \(Debian\/Ubuntu: sudo apt-get install redis-server/,
  );
  assert.equal(stderr.trim().split("\n").length, 1);
});
