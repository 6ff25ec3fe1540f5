/**
 * Secrets in addresses, as real processes see them: a Redis password holding `@`, `:`, `/` and `?`,
 * credentials and a `?token=` in K_SINK and DEAD_LETTER_SINK, a malformed stored URL with a token. Each
 * must be used (Redis accepts the password, the sinks get their credentials) and never printed: not in
 * start-up logs, not in warn or debug logs, not in the dlq CLI's errors, not in a CloudEvent's source.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { encodeEnvelope } from "../src/lib/envelope.js";
import { streamKeys } from "../src/lib/keys.js";
import { connectRedis, parseRedisAddress } from "../src/lib/redis.js";
import { type RecordingServer, startRecordingServer } from "./helpers/http.js";
import { waitFor } from "./helpers/net.js";
import { killAll, runCommand, startComponent } from "./helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "./helpers/redis-server.js";
import { isUri } from "./helpers/uri.js";

/** Every piece of every secret below; none may be printed. */
const SECRET_PIECES = ["Rzq7", "Vwq3", "Mxq9", "Ljq2", "Skq1", "Tkq2", "Tokq3", "Dkq4", "Sgq5", "Tokq6"];
const REDIS_PASSWORD = "Rzq7@Vwq3:/Mxq9?Ljq2";

let redisServer: TestRedisServer;
let admin: Redis;
let sink: RecordingServer;
let deadLetterSink: RecordingServer;

before(async () => {
  redisServer = await startRedisServer();
  admin = connectRedis(parseRedisAddress(redisServer.address), { name: "test" });
  await admin.acl("SETUSER", "bob", "on", `>${REDIS_PASSWORD}`, "~*", "&*", "+@all");
  sink = await startRecordingServer(() => ({ status: 502, headers: { "async-target-status": "500" } }));
  deadLetterSink = await startRecordingServer();
});

after(async () => {
  await killAll();
  await sink.close();
  await deadLetterSink.close();
  admin.disconnect();
  await redisServer.cleanup();
});

function assertNoSecret(output: string, what: string): void {
  for (const piece of SECRET_PIECES) {
    assert.ok(!output.includes(piece), `${what} shows the secret piece ${piece}:\n${output}`);
  }
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

const redisAddress = () => `redis://bob:${REDIS_PASSWORD}@127.0.0.1:${redisServer.port}`;

describe("secrets in addresses", () => {
  test("the dispatcher uses every credential and prints none, in start-up, warn and debug logs", async () => {
    const stream = `s-${randomUUID()}`;
    const dispatcher = await startComponent("dispatcher", {
      REDIS_ADDRESS: redisAddress(),
      REDIS_STREAM_NAME: stream,
      K_SINK: `http://sinkuser:Skq1@Tkq2@127.0.0.1:${sink.port}/events?token=Tokq3&x=1`,
      DEAD_LETTER_SINK: `http://dl:Dkq4@127.0.0.1:${deadLetterSink.port}/dead?sig=Sgq5`,
      MAX_ATTEMPTS: "1",
      DISPATCHER_NAME: "d-secrets",
      LOG_LEVEL: "debug",
    });
    try {
      const good = encodeEnvelope({
        id: "good",
        url: "http://app.default.svc.cluster.local/x",
        method: "PUT",
        headers: {},
        body: Buffer.from("hi"),
      });
      const malformed = JSON.stringify({ id: "bad", url: "not a url?token=Tokq6", method: "GET" });
      await admin.xadd(stream, "*", "data", good);
      await admin.xadd(stream, "*", "data", malformed);
      await waitFor(() => deadLetterSink.received.length === 2, { what: "two dead-letter notices" });

      // The credentials went where they belong.
      assert.equal(sink.received.length, 1);
      const event = sink.received[0];
      assert.equal(event?.url, "/events?token=Tokq3&x=1");
      assert.equal(event?.headers.authorization, basic("sinkuser", "Skq1@Tkq2"));
      for (const notice of deadLetterSink.received) {
        assert.equal(notice.url, "/dead?sig=Sgq5");
        assert.equal(notice.headers.authorization, basic("dl", "Dkq4"));
      }
      // Every event's source is a valid URI naming the stream, without the password.
      for (const received of [...sink.received, ...deadLetterSink.received]) {
        const source = String(received.headers["ce-source"]);
        assert.equal(source, `redis://127.0.0.1:${redisServer.port}/${stream}`);
        assert.ok(isUri(source));
      }
      assert.equal(await admin.xlen(streamKeys(stream).deadLetter), 2);

      const output = dispatcher.output();
      assert.match(output, /"msg":"dispatcher started"/);
      assert.match(output, /sinkuser:\*\*\*@127\.0\.0\.1:\d+\/events\?token=\*\*\*&x=1/);
      assert.match(output, /not a url\?token=\*\*\*/, "the malformed entry's warning is there, masked");
      assertNoSecret(output, "the dispatcher's logs");
    } finally {
      await dispatcher.kill();
    }
    assertNoSecret(dispatcher.output(), "the dispatcher's logs at exit");
  });

  test("the producer's start-up log shows the Redis address masked", async () => {
    const producer = await startComponent("producer", {
      REDIS_ADDRESS: redisAddress(),
      REDIS_STREAM_NAME: `s-${randomUUID()}`,
      LOG_LEVEL: "info",
    });
    try {
      await waitFor(() => producer.output().includes("producer listening"), { what: "start-up log" });
      assert.ok(
        producer.output().includes(`"redis":"redis://bob:***@127.0.0.1:${redisServer.port}"`),
        producer.output(),
      );
      assertNoSecret(producer.output(), "the producer's logs");
    } finally {
      await producer.kill();
    }
  });

  test("a K_SINK with credentials that does not parse: the one-line config error masks them", async () => {
    const result = await runCommand(["dispatcher"], {
      REDIS_ADDRESS: redisAddress(),
      K_SINK: "http://u:Skq1@Tkq2@[bad/?token=Tokq3",
      PORT: "0",
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^knative-async dispatcher: invalid dispatcher configuration: K_SINK: /);
    assertNoSecret(result.stderr + result.stdout, "a K_SINK config error");
  });

  test("the dlq CLI: errors about an address without a scheme or unreachable never show its password", async () => {
    const stream = `s-${randomUUID()}`;
    const unreachable = await runCommand(["dlq", "list"], {
      REDIS_ADDRESS: `bob:${REDIS_PASSWORD}@127.0.0.1:1`,
      REDIS_STREAM_NAME: stream,
    });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /^knative-async dlq: Redis at bob:\*\*\*@127\.0\.0\.1:1: /);
    assertNoSecret(unreachable.stderr, "the unreachable-Redis error");

    const invalid = await runCommand(["dlq", "list"], {
      REDIS_ADDRESS: `bob:${REDIS_PASSWORD}@127.0.0.1:notaport`,
    });
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /REDIS_ADDRESS: not a Redis address/);
    assertNoSecret(invalid.stderr, "the invalid-address error");

    // With the right password it lists, and a token in a stored URL is masked in the list.
    await admin.xadd(
      streamKeys(stream).deadLetter,
      "*",
      "data",
      encodeEnvelope({
        id: "r-1",
        url: "http://app.default.svc.cluster.local/x?token=Tokq6",
        method: "GET",
        headers: {},
        body: Buffer.alloc(0),
      }),
      "reason",
      "max-attempts",
    );
    const listed = await runCommand(["dlq", "list"], {
      REDIS_ADDRESS: `bob:${REDIS_PASSWORD}@127.0.0.1:${redisServer.port}`,
      REDIS_STREAM_NAME: stream,
    });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /GET http:\/\/app\.default\.svc\.cluster\.local\/x\?token=\*\*\*/);
    assertNoSecret(listed.stdout + listed.stderr, "dlq list");
  });

  test("the dev mode's lines: the Redis address and a request's token masked", async () => {
    const child = spawn(process.execPath, ["bin/knative-async.js", "dev", "--port", "0", "--sleep", "0s"], {
      env: {
        PATH: process.env.PATH ?? "",
        REDIS_ADDRESS: redisAddress(),
        REDIS_STREAM_NAME: `s-${randomUUID()}`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c) => {
      output += c;
    });
    child.stderr.on("data", (c) => {
      output += c;
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      await waitFor(() => output.includes("Ctrl-C stops everything"), {
        timeoutMs: 30_000,
        what: "dev start",
      });
      assert.match(output, new RegExp(`redis +redis://bob:\\*\\*\\*@127\\.0\\.0\\.1:${redisServer.port} `));
      const gateway = /gateway +(http:\/\/\S+)/.exec(output)?.[1];
      const response = await fetch(`${gateway}/hello?token=Tokq6&x=1`, {
        headers: { prefer: "respond-async" },
      });
      assert.equal(response.status, 202);
      await waitFor(() => /delivered +\S+ +200/.test(output), { what: "delivered line" });
      assert.match(output, /queued +\S+ +GET \/hello\?token=\*\*\*&x=1/);
      assertNoSecret(output, "the dev mode's output");
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  });
});
