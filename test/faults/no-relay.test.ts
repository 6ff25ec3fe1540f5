/**
 * Nothing relays an async request to a target the rule forbids (issue 9, item 1): not the producer, not
 * the dispatcher given an entry written straight into the stream, not the consumer given an event POSTed
 * by anyone. A recording server stands in for a forbidden target (a metadata service, an internal API);
 * the app is allowed by its loopback host:port, as its cluster-local name would be on a cluster.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import type { Redis } from "ioredis";
import { request } from "undici";
import { DATA_FIELD, fieldValue } from "../../src/lib/entry.js";
import { encodeEnvelope } from "../../src/lib/envelope.js";
import { ErrorCode } from "../../src/lib/errors.js";
import { streamKeys } from "../../src/lib/keys.js";
import { AsyncServicesWriter } from "../../src/lib/registry.js";
import { type RecordingServer, startRecordingServer } from "../helpers/http.js";
import { freePort, waitFor } from "../helpers/net.js";
import { type ComponentProcess, killAll } from "../helpers/processes.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import { UNSIGNED_ENV } from "../helpers/signing.js";
import { redisClient, sendAsync, startConsumer, startDispatcher, startProducer } from "./pipeline.js";

let redis: TestRedisServer;
let client: Redis;
let app: RecordingServer;
let victim: RecordingServer;
let onlyTheApp: Record<string, string>;

before(async () => {
  redis = await startRedisServer();
  client = redisClient(redis);
  app = await startRecordingServer();
  victim = await startRecordingServer();
  onlyTheApp = { ALLOWED_TARGET_HOSTS: `127.0.0.1:${app.port}` };
});

after(async () => {
  await killAll();
  client.disconnect();
  await Promise.all([app.close(), victim.close()]);
  await redis.cleanup();
});

function envelopeFor(url: string, method = "POST"): { id: string; text: string } {
  const id = randomUUID();
  const text = encodeEnvelope({
    id,
    url,
    method,
    headers: { Authorization: ["Bearer stolen"], "Content-Type": ["text/plain"] },
    body: Buffer.from("payload"),
    acceptedAt: Date.now(),
  });
  return { id, text };
}

/** A binary CloudEvent as our dispatcher sends it, but POSTed by whoever reaches the consumer. */
async function postEvent(consumer: ComponentProcess, url: string, method = "DELETE") {
  const { id, text } = envelopeFor(url, method);
  const res = await request(`${consumer.url}/`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-type": "dev.knative.sources.redisstream",
      "ce-id": "1-0",
      "ce-source": "redis://attacker/stream",
      "ce-asyncrequestid": id,
    },
    body: JSON.stringify([DATA_FIELD, text]),
  });
  return { id, status: res.statusCode, error: res.headers["async-error"], body: await res.body.text() };
}

test("the consumer refuses an event not signed by our dispatcher, and sends nothing", async () => {
  const consumer = await startConsumer(onlyTheApp);
  for (const url of [`http://127.0.0.1:${app.port}/ok`, `http://127.0.0.1:${victim.port}/admin`]) {
    const refused = await postEvent(consumer, url);
    assert.equal(refused.status, 401, refused.body);
    assert.equal(JSON.parse(refused.body).error, ErrorCode.Unauthenticated);
  }
  assert.equal(app.received.length + victim.received.length, 0, "nothing was sent");
  await consumer.kill();
});

test("even accepting unsigned events, the consumer replays to the app only, never to a forbidden target", async () => {
  const consumer = await startConsumer({ ...onlyTheApp, ...UNSIGNED_ENV });
  const allowed = await postEvent(consumer, `http://127.0.0.1:${app.port}/ok`, "POST");
  assert.equal(allowed.status, 200, allowed.body);
  await waitFor(() => app.received.some((r) => r.headers["async-request-id"] === allowed.id));

  for (const url of [
    `http://127.0.0.1:${victim.port}/latest/meta-data/iam`,
    "http://169.254.169.254/latest/meta-data/",
    "http://redis.redis.svc.cluster.local:6379/victim",
    "http://kubernetes.default.svc/api/v1/secrets",
    "http://async-producer.knative-serving.svc.cluster.local/",
    "http://app.default.svc:8080/",
  ]) {
    const refused = await postEvent(consumer, url);
    assert.equal(refused.status, 403, `${url}: ${refused.body}`);
    assert.equal(refused.error, ErrorCode.ForbiddenTarget, url);
  }
  assert.equal(victim.received.length, 0, "the forbidden target received nothing");
  await consumer.kill();
});

test("entries written straight into the stream to a forbidden target are dead-lettered, never sent", async () => {
  for (const mode of ["direct", "cloudevent"] as const) {
    const stream = `relay-${mode}-${randomUUID().slice(0, 8)}`;
    const keys = streamKeys(stream);
    const bad = envelopeFor(`http://127.0.0.1:${victim.port}/admin/delete-all`, "DELETE");
    const good = envelopeFor(`http://127.0.0.1:${app.port}/fine`);
    await client.xadd(stream, "*", DATA_FIELD, bad.text);
    await client.xadd(stream, "*", DATA_FIELD, good.text);

    // The consumer allows loopback on any port here: the dispatcher must refuse on its own.
    const consumer = mode === "cloudevent" ? await startConsumer() : undefined;
    const sink = consumer?.url ?? `http://127.0.0.1:${await freePort()}`;
    const dispatcher = await startDispatcher(redis, stream, sink, `d-${mode}`, {
      ...onlyTheApp,
      DISPATCH_MODE: mode,
    });
    await waitFor(() => app.received.some((r) => r.headers["async-request-id"] === good.id));
    await waitFor(async () => (await client.xlen(keys.deadLetter)) === 1);
    const [entry] = (await client.xrange(keys.deadLetter, "-", "+")) as [string, string[]][];
    const fields = entry?.[1] ?? [];
    assert.equal(fieldValue(fields, "reason"), "forbidden-target", mode);
    assert.match(fieldValue(fields, "lastError") ?? "", /forbidden|FORBIDDEN/i);
    assert.equal(victim.received.length, 0, `${mode}: the forbidden target received nothing`);
    await dispatcher.kill();
    await consumer?.kill();
  }
});

test("the producer refuses this project's own services, ports that are not service ports, and services that are not async", async () => {
  const stream = `relay-producer-${randomUUID().slice(0, 8)}`;
  // The app is an async service, as the controller publishes it.
  await new AsyncServicesWriter(client, streamKeys(stream)).publish("default/app", {
    hosts: ["app.default.svc.cluster.local"],
    policy: {},
  });
  const producer = await startProducer(redis, stream, app);
  for (const host of [
    "async-consumer.knative-serving.svc.cluster.local",
    "async-producer.knative-serving.svc",
    "redis.redis.svc.cluster.local:6379",
    "app.default.svc:8080",
    // A cluster-local service that never opted in: the producer is no deputy for it.
    "internal-api.default.svc",
  ]) {
    const sent = await sendAsync(producer, app, "/x", { headers: { "async-original-host": host } });
    assert.equal(sent.status, 403, host);
  }
  const ok = await sendAsync(producer, app, "/x", {
    headers: { "async-original-host": "app.default.svc:80" },
  });
  assert.equal(ok.status, 202);
  await producer.kill();
});
