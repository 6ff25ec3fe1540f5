/**
 * `knative-async consumer` and `knative-async sample-app` as real processes: configuration from the
 * environment, an event replayed from one process to the other, the app's recording read over HTTP,
 * and SIGTERM.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, test } from "node:test";
import { request } from "undici";
import { encodeEnvelope } from "../src/lib/envelope.js";
import { freePort, waitFor } from "./helpers/net.js";

import { UNSIGNED_ENV } from "./helpers/signing.js";
import { LOOPBACK_TARGET_ENV } from "./helpers/targets.js";

const CLI = join(import.meta.dirname, "..", "bin", "knative-async.js");
const children: ChildProcess[] = [];

function run(command: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, command], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const output = { stdout: "", stderr: "" };
  child.stdout?.on("data", (c) => {
    output.stdout += c;
  });
  child.stderr?.on("data", (c) => {
    output.stderr += c;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output, exited };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref()),
  ]);
}

async function answers(port: number, path: string): Promise<boolean> {
  try {
    const res = await request(`http://127.0.0.1:${port}${path}`);
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}

after(() => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

test("a bad consumer configuration is one line on stderr and exit code 1", async () => {
  const { exited, output } = run("consumer", { REQUEST_TIMEOUT: "soon", PORT: "0" });
  assert.equal(await withTimeout(exited, 20_000, "consumer exit"), 1);
  assert.match(
    output.stderr,
    /^knative-async consumer: invalid consumer configuration: REQUEST_TIMEOUT: .*\n$/,
  );
});

test("consumer and sample app processes: replay, recording over HTTP, SIGTERM", async () => {
  const appPort = await freePort();
  const consumerPort = await freePort();
  const app = run("sample-app", { PORT: String(appPort), SLEEP: "0ms", RECORD: "true" });
  const consumer = run("consumer", {
    PORT: String(consumerPort),
    LOG_LEVEL: "warn",
    ...LOOPBACK_TARGET_ENV,
    ...UNSIGNED_ENV,
  });
  // The app records every request it serves, except the listing itself.
  await waitFor(
    async () => (await answers(appPort, "/_received")) && (await answers(consumerPort, "/healthz")),
    {
      timeoutMs: 20_000,
      what: "both processes to listen",
    },
  );

  const body = randomBytes(2048);
  const event = JSON.stringify([
    "data",
    encodeEnvelope({
      id: "cli-1",
      url: `http://127.0.0.1:${appPort}/from/cli?k=v`,
      method: "POST",
      headers: { "Content-Type": ["application/octet-stream"] },
      body,
    }),
  ]);
  const res = await request(`http://127.0.0.1:${consumerPort}/`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-type": "dev.knative.sources.redisstream",
      "ce-id": "1-0",
      "ce-source": "test",
    },
    body: event,
  });
  await res.body.dump();
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers["async-target-status"], "200");

  const listed = await request(`http://127.0.0.1:${appPort}/_received`);
  const received = (await listed.body.json()) as {
    url: string;
    body: string;
    headers: Record<string, string[]>;
  }[];
  assert.equal(received.length, 1);
  assert.equal(received[0]?.url, "/from/cli?k=v");
  assert.ok(Buffer.from(received[0]?.body ?? "", "base64").equals(body));
  assert.deepEqual(received[0]?.headers["async-request-id"], ["cli-1"]);
  assert.match(app.output.stdout, /"msg":"received a request, sleeping 0ms"/);

  app.child.kill("SIGTERM");
  consumer.child.kill("SIGTERM");
  assert.equal(await withTimeout(app.exited, 10_000, "sample app exit"), 0);
  assert.equal(await withTimeout(consumer.exited, 10_000, "consumer exit"), 0);
});
