import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { HTTP } from "cloudevents";
import { type RecordingServer, startRecordingServer } from "../../test/helpers/http.js";
import { freePort } from "../../test/helpers/net.js";
import { type AsyncRequest, encodeEnvelope } from "../lib/envelope.js";
import { ErrorCode } from "../lib/errors.js";
import { createCloudEventDeliverer, type Deliverer } from "./deliver.js";

let sink: RecordingServer;
let deliverer: Deliverer;

before(async () => {
  sink = await startRecordingServer();
  deliverer = createCloudEventDeliverer({
    sink: `${sink.url}events?from=dispatcher`,
    source: "127.0.0.1:6379/mystream",
    connections: 4,
  });
});

after(async () => {
  await deliverer.close();
  await sink.close();
});

const request: AsyncRequest = {
  id: "req-1",
  url: "http://app.default.svc.cluster.local/things?x=1",
  method: "POST",
  headers: { "Content-Type": ["text/plain"] },
  body: Buffer.from('a "quoted" body'),
  acceptedAt: 1_700_000_000_000,
};
const entry = { id: "1700000000000-0", fields: ["data", encodeEnvelope(request), "attempts", "1"] };

describe("CloudEvent deliverer (real HTTP sink)", () => {
  test("POSTs the entry as a binary-mode eventing-redis event to the sink's path and query", async () => {
    sink.respond = () => ({ status: 200 });
    const outcome = await deliverer.deliver(entry, request, 2, 1000);
    assert.equal(outcome.kind, "response");
    assert.equal(outcome.kind === "response" && outcome.status, 200);
    const received = sink.received.at(-1);
    assert.ok(received);
    assert.equal(received.method, "POST");
    assert.equal(received.url, "/events?from=dispatcher");
    const event = HTTP.toEvent({
      headers: received.headers as Record<string, string>,
      body: received.body.toString(),
    });
    assert.ok(!Array.isArray(event));
    assert.equal(event.specversion, "1.0");
    assert.equal(event.type, "dev.knative.sources.redisstream");
    assert.equal(event.id, entry.id);
    assert.equal(event.source, "127.0.0.1:6379/mystream");
    assert.equal(event.datacontenttype, "application/json");
    assert.ok(!Number.isNaN(Date.parse(String(event.time))));
    assert.equal(event.asyncrequestid, "req-1");
    assert.equal(event.asyncattempt, "2");
    assert.deepEqual(event.data, entry.fields);
  });

  test("reads the consumer's facts back from its answer", async () => {
    sink.respond = () => ({
      status: 502,
      headers: { "async-target-status": "503", "retry-after": "7", "async-target-duration-ms": "3" },
      body: '{"targetStatus":503}',
    });
    const retry = await deliverer.deliver(entry, request, 1, 1000);
    assert.equal(retry.kind, "response");
    assert.equal(retry.kind === "response" && retry.status, 503);
    assert.equal(retry.retryAfterMs, 7000);

    sink.respond = () => ({ status: 504, headers: { "async-error": ErrorCode.TargetTimeout } });
    const timeout = await deliverer.deliver(entry, request, 1, 1000);
    assert.equal(timeout.kind === "error" && timeout.code, ErrorCode.TargetTimeout);

    // Any other sink: its own status is the outcome.
    sink.respond = () => ({ status: 404 });
    const other = await deliverer.deliver(entry, request, 1, 1000);
    assert.equal(other.kind === "response" && other.status, 404);
  });

  test("a sink answering a large body: the status counts, the rest is not read", async () => {
    sink.respond = () => ({ status: 202, body: "x".repeat(1024 * 1024) });
    const outcome = await deliverer.deliver(entry, request, 1, 1000);
    assert.equal(outcome.kind === "response" && outcome.status, 202);
    sink.respond = () => ({ status: 200 });
    const next = await deliverer.deliver(entry, request, 1, 1000);
    assert.equal(next.kind === "response" && next.status, 200, "the next delivery works");
  });

  test("a sink that breaks the connection before answering: the app may have it", async () => {
    sink.respond = (_r, res) => {
      res.socket?.destroy();
    };
    const outcome = await deliverer.deliver(entry, request, 1, 1000);
    assert.equal(outcome.kind === "error" && outcome.code, ErrorCode.TargetFailed);
    assert.match(outcome.kind === "error" ? outcome.message : "", /^sink: /);
  });

  test("a sink nobody listens on: unreachable, so the app never got it", async () => {
    const nowhere = createCloudEventDeliverer({
      sink: `http://127.0.0.1:${await freePort()}/`,
      source: "s",
      connections: 1,
    });
    try {
      const outcome = await nowhere.deliver(entry, request, 1, 1000);
      assert.equal(outcome.kind === "error" && outcome.code, ErrorCode.TargetUnreachable);
    } finally {
      await nowhere.close();
    }
  });
});
