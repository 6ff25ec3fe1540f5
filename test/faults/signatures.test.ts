/**
 * The consumer acts only on events our dispatcher signed, and secrets can be rotated without losing a
 * request: real producer, dispatcher and consumer processes, a real redis-server.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { streamKeys } from "../../src/lib/keys.js";
import { type RecordingServer, startRecordingServer } from "../helpers/http.js";
import { waitFor } from "../helpers/net.js";
import { startTestIssuer } from "../helpers/oidc.js";
import { killAll } from "../helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import { redisClient, requestIdOf, sendAsync, sleep, startConsumer, startPipeline } from "./pipeline.js";

let redis: TestRedisServer;
let client: Redis;
let app: RecordingServer;

before(async () => {
  redis = await startRedisServer();
  client = redisClient(redis);
  app = await startRecordingServer();
});

after(async () => {
  await killAll();
  client.disconnect();
  await app.close();
  await redis.cleanup();
});

test("a consumer with another secret refuses every event; the requests wait, and arrive once the secrets agree", async () => {
  const pipeline = await startPipeline(redis, app, {
    dispatcher: {
      EVENT_SIGNING_SECRETS: "new-secret",
      MIN_BACKOFF: "200ms",
      MAX_BACKOFF: "400ms",
      MAX_ATTEMPTS: "1000",
    },
    consumer: { EVENT_SIGNING_SECRETS: "old-secret" },
  });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const sent = await sendAsync(pipeline.producer, app, `/signed/${i}`, { body: `n=${i}` });
    assert.equal(sent.status, 202);
    ids.push(sent.id as string);
  }
  await sleep(1500);
  assert.equal(app.received.length, 0, "nothing reached the app through a consumer that refuses the events");
  assert.equal(await client.xlen(streamKeys(pipeline.stream).deadLetter), 0, "and nothing was dead-lettered");

  // The rotation's first step: the consumer accepts both secrets. The waiting requests now arrive.
  await pipeline.consumer.kill();
  await startConsumer({ EVENT_SIGNING_SECRETS: "old-secret,new-secret" }, { port: pipeline.consumer.port });
  await waitFor(() => ids.every((id) => app.received.some((r) => requestIdOf(r) === id)), {
    timeoutMs: 20_000,
  });
  assert.equal(await client.xlen(streamKeys(pipeline.stream).deadLetter), 0);
});

test("OIDC sender authentication: the dispatcher's projected token is accepted; a token for another audience is not", async () => {
  const issuer = await startTestIssuer();
  const dir = mkdtempSync(join(tmpdir(), "oidc-token-"));
  const tokenFile = join(dir, "token");
  const subject = "system:serviceaccount:knative-serving:async-dispatcher";
  const claims = (aud: string) => ({
    iss: issuer.issuer,
    aud: [aud],
    sub: subject,
    exp: Math.floor(Date.now() / 1000) + 3600,
  });
  writeFileSync(tokenFile, issuer.token(claims("some-other-service")));
  try {
    const pipeline = await startPipeline(redis, app, {
      // No shared secret on either side: the token is all the consumer can go by.
      dispatcher: {
        EVENT_SIGNING_SECRETS: "",
        OIDC_TOKEN_FILE: tokenFile,
        MIN_BACKOFF: "200ms",
        MAX_BACKOFF: "400ms",
        MAX_ATTEMPTS: "1000",
      },
      consumer: {
        EVENT_SIGNING_SECRETS: "",
        OIDC_ISSUER: issuer.issuer,
        OIDC_AUDIENCE: "async-consumer",
        OIDC_SUBJECTS: subject,
      },
    });
    const sent = await sendAsync(pipeline.producer, app, "/oidc", { body: "x" });
    assert.equal(sent.status, 202);
    await sleep(1500);
    assert.ok(
      !app.received.some((r) => requestIdOf(r) === sent.id),
      "a token for another audience is refused",
    );

    // The kubelet rotates the projected token: now for the consumer's audience.
    writeFileSync(tokenFile, issuer.token(claims("async-consumer")));
    await waitFor(() => app.received.some((r) => requestIdOf(r) === sent.id), { timeoutMs: 15_000 });
  } finally {
    await issuer.close();
  }
});
