import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { type RecordingServer, startRecordingServer } from "../../test/helpers/http.js";
import { waitFor } from "../../test/helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { loadDispatcherConfig } from "../dispatcher/config.js";
import { type AttemptInfo, startDispatcher } from "../dispatcher/dispatcher.js";
import { fieldValue } from "../lib/entry.js";
import { encodeEnvelope } from "../lib/envelope.js";
import { streamKeys } from "../lib/keys.js";
import { createLogger } from "../lib/logger.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import { DeadLetters } from "./dlq.js";

let redisServer: TestRedisServer;
let redis: Redis;
let sink: RecordingServer;

before(async () => {
  redisServer = await startRedisServer();
  redis = connectRedis(parseRedisAddress(redisServer.address), { name: "test" });
  sink = await startRecordingServer();
});

after(async () => {
  await sink.close();
  redis.disconnect();
  await redisServer.cleanup();
});

function envelope(id: string): string {
  return encodeEnvelope({
    id,
    url: "http://app.default.svc.cluster.local/work",
    method: "PUT",
    headers: {},
    body: Buffer.from([0, 1, 2, 255]),
    acceptedAt: Date.now(),
  });
}

function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["bin/knative-async.js", "dlq", ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => {
      stdout += c;
    });
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe("dead-letter stream", () => {
  test("a target that always fails is dead-lettered with context; replay delivers it once fixed", async () => {
    const stream = `s-${randomUUID()}`;
    const keys = streamKeys(stream);
    sink.respond = () => ({ status: 502, headers: { "async-target-status": "500" } });
    const attempts: AttemptInfo[] = [];
    const dispatcher = await startDispatcher(
      loadDispatcherConfig({
        REDIS_ADDRESS: redisServer.address,
        REDIS_STREAM_NAME: stream,
        K_SINK: sink.url,
        PORT: "0",
        MAX_ATTEMPTS: "3",
        MIN_BACKOFF: "20ms",
        MAX_BACKOFF: "50ms",
      }),
      { logger: createLogger("dispatcher", { level: "silent" }), onAttempt: (a) => attempts.push(a) },
    );
    try {
      await redis.xadd(stream, "*", "data", envelope("doomed"));
      const dlq = new DeadLetters(redis, keys);
      await waitFor(async () => (await dlq.count()) === 1, { what: "dead-lettered" });
      const [item] = await dlq.list();
      assert.ok(item);
      assert.equal(item.reason, "max-attempts");
      assert.equal(item.attempts, 3);
      assert.equal(item.lastStatus, "500");
      assert.equal(item.request?.id, "doomed");
      assert.deepEqual(item.request?.body, Buffer.from([0, 1, 2, 255]));
      assert.ok(item.firstAttemptAt && item.lastAttemptAt && item.deadLetteredAt);

      // The CLI shows it too.
      const env = { REDIS_ADDRESS: redisServer.address, REDIS_STREAM_NAME: stream };
      const listed = await runCli(["list"], env);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /1 dead-lettered/);
      assert.match(
        listed.stdout,
        new RegExp(`${item.id}.*max-attempts.*PUT http://app.default.svc.cluster.local/work`),
      );
      const shown = await runCli(["show", item.id], env);
      assert.equal(
        JSON.parse(shown.stdout).request.bodyBase64,
        Buffer.from([0, 1, 2, 255]).toString("base64"),
      );

      // Fix the target, replay through the CLI: delivered once, with a fresh set of attempts.
      sink.respond = () => ({ status: 200, headers: { "async-target-status": "200" } });
      const replayed = await runCli(["replay", item.id], env);
      assert.equal(replayed.code, 0, replayed.stderr);
      assert.match(replayed.stdout, /replayed 1/);
      await waitFor(() => attempts.some((a) => a.decision.action === "ack"), {
        what: "delivered after replay",
      });
      const delivered = attempts.filter((a) => a.decision.action === "ack");
      assert.equal(delivered.length, 1);
      assert.equal(delivered[0]?.attempt, 1);
      assert.equal(await dlq.count(), 0);
      const lastEvent = JSON.parse(sink.received.at(-1)?.body.toString() ?? "[]") as string[];
      assert.equal(fieldValue(lastEvent, "attempts"), undefined, "context dropped on replay");
    } finally {
      await dispatcher.close();
    }
  });

  test("a replayed entry older than MAX_EVENT_AGE is delivered: a replay starts the age over", async () => {
    const stream = `s-${randomUUID()}`;
    const keys = streamKeys(stream);
    sink.respond = () => ({ status: 200, headers: { "async-target-status": "200" } });
    const attempts: AttemptInfo[] = [];
    const dispatcher = await startDispatcher(
      loadDispatcherConfig({
        REDIS_ADDRESS: redisServer.address,
        REDIS_STREAM_NAME: stream,
        K_SINK: sink.url,
        PORT: "0",
        MAX_EVENT_AGE: "1s",
      }),
      { logger: createLogger("dispatcher", { level: "silent" }), onAttempt: (a) => attempts.push(a) },
    );
    try {
      const old = encodeEnvelope({
        id: "expired",
        url: "http://app.default.svc.cluster.local/work",
        method: "PUT",
        headers: {},
        body: Buffer.from("late"),
        acceptedAt: Date.now() - 60_000,
      });
      // As the dispatcher leaves it (reason max-age), with the mark of an earlier replay.
      const deadId = (await redis.xadd(
        keys.deadLetter,
        "*",
        "data",
        old,
        "replayedAt",
        "1",
        "reason",
        "max-age",
        "attempts",
        "0",
      )) as string;
      const dlq = new DeadLetters(redis, keys);
      const before = Date.now();
      assert.deepEqual(await dlq.replay([deadId]), { replayed: 1, missing: [] });
      await waitFor(() => attempts.length === 1, { what: "the replayed attempt" });
      assert.deepEqual(attempts[0]?.decision, { action: "ack" });
      assert.equal(await dlq.count(), 0);
      const event = JSON.parse(sink.received.at(-1)?.body.toString() ?? "[]") as string[];
      assert.equal(event.filter((f) => f === "replayedAt").length, 1, "one mark, the new one");
      assert.ok(Number(fieldValue(event, "replayedAt")) >= before - 1000);
    } finally {
      await dispatcher.close();
    }
  });

  test("replay --all and purge act on what is there; unknown ids are reported", async () => {
    const stream = `s-${randomUUID()}`;
    const keys = streamKeys(stream);
    const dlq = new DeadLetters(redis, keys);
    for (let i = 0; i < 450; i++) {
      await redis.xadd(
        keys.deadLetter,
        "*",
        "data",
        envelope(`r-${i}`),
        "reason",
        "max-attempts",
        "attempts",
        "3",
      );
    }
    assert.equal(await dlq.replayAll(), 450);
    assert.equal(await dlq.count(), 0);
    assert.equal(await redis.xlen(stream), 450);
    const [first] = (await redis.xrange(stream, "-", "+", "COUNT", 1)) as [[string, string[]]];
    assert.deepEqual(first[1].slice(0, 1), ["data"]);
    assert.equal(fieldValue(first[1], "reason"), undefined);

    const id = await redis.xadd(keys.deadLetter, "*", "data", "{bad", "reason", "malformed");
    const missing = await dlq.replay(["0-1"]);
    assert.deepEqual(missing, { replayed: 0, missing: ["0-1"] });
    const [bad] = await dlq.list();
    assert.match(bad?.decodeError ?? "", /not JSON/);
    assert.equal(await dlq.purge([id as string]), 1);
    for (let i = 0; i < 3; i++) await redis.xadd(keys.deadLetter, "*", "data", envelope(`p-${i}`));
    assert.equal(await dlq.purgeAll(), 3);
  });

  test("the CLI explains bad usage and an unreachable Redis in one line", async () => {
    const bad = await runCli(["show"], { REDIS_ADDRESS: redisServer.address });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /show needs one entry ID/);
    const down = await runCli(["list"], { REDIS_ADDRESS: "127.0.0.1:1" });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^knative-async dlq: Redis at 127\.0\.0\.1:1: /);
    const config = await runCli(["list"], { REDIS_ADDRESS: "ftp://x" });
    assert.equal(config.code, 1);
    assert.match(config.stderr, /REDIS_ADDRESS/);
  });

  test("the CLI escapes terminal control bytes and bidi overrides from stored entries, in every output", async () => {
    const stream = `s-${randomUUID()}`;
    const keys = streamKeys(stream);
    const hostile = "\x1b[31mred\r\u202eevil\x7f\u009b2J\u2066";
    const url = `http://app.default.svc.cluster.local/${hostile}`;
    await redis.xadd(
      keys.deadLetter,
      "*",
      "data",
      encodeEnvelope({
        id: "r-esc",
        url,
        method: "POST",
        headers: { "X-Evil": [hostile] },
        body: Buffer.from(hostile),
      }),
      "reason",
      `max-attempts${hostile}`,
      "attempts",
      "3",
      "lastError",
      `boom${hostile}`,
    );
    // An entry that does not decode: its method is the escape, and so is its decode error's subject.
    const undecodable = JSON.stringify({ id: "r-bad", url: `not a url${hostile}`, method: `GET${hostile}` });
    await redis.xadd(keys.deadLetter, "*", "data", undecodable, "reason", "malformed");
    const env = { REDIS_ADDRESS: redisServer.address, REDIS_STREAM_NAME: stream };
    /** Nothing a terminal would act on: no C0 but the line ends, no DEL, no C1, no bidi controls. */
    const unsafe = (text: string) =>
      [...text].some((ch) => {
        const c = ch.codePointAt(0) ?? 0;
        return (
          (c < 0x20 && c !== 0x0a) ||
          (c >= 0x7f && c <= 0x9f) ||
          c === 0x061c ||
          c === 0x200e ||
          c === 0x200f ||
          (c >= 0x202a && c <= 0x202e) ||
          (c >= 0x2066 && c <= 0x2069)
        );
      });

    const listed = await runCli(["list"], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(!unsafe(listed.stdout), JSON.stringify(listed.stdout));
    assert.ok(listed.stdout.includes("POST http://app.default.svc.cluster.local/\\x1b[31mred\\r\\u202eevil"));
    assert.ok(listed.stdout.includes("boom\\x1b[31m"));
    assert.ok(listed.stdout.includes("(undecodable: "));

    const json = await runCli(["list", "--json"], env);
    assert.equal(json.code, 0, json.stderr);
    assert.ok(!unsafe(json.stdout), JSON.stringify(json.stdout));
    const [first, second] = json.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    assert.equal(first.url, url, "JSON escapes are decoded back to the stored bytes");
    assert.equal(first.lastError, `boom${hostile}`);
    assert.equal(second.reason, "malformed");

    const ids = json.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line).id as string);
    for (const id of ids) {
      const shown = await runCli(["show", id], env);
      assert.equal(shown.code, 0, shown.stderr);
      assert.ok(!unsafe(shown.stdout), JSON.stringify(shown.stdout));
      const detail = JSON.parse(shown.stdout);
      if (detail.request) {
        assert.equal(detail.request.url, url);
        assert.deepEqual(detail.request.headers["X-Evil"], [hostile]);
        assert.equal(detail.request.body, hostile);
      } else {
        assert.deepEqual(detail.data, ["data", undecodable, "reason", "malformed"]);
      }
    }
  });
});
