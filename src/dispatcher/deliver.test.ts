import assert from "node:assert/strict";
import { createServer as createTlsServer } from "node:https";
import { after, before, describe, test } from "node:test";
import { HTTP } from "cloudevents";
import { type RecordingServer, startRecordingServer } from "../../test/helpers/http.js";
import { freePort } from "../../test/helpers/net.js";
import { LOOPBACK_TARGETS } from "../../test/helpers/targets.js";
import { type AsyncRequest, encodeEnvelope } from "../lib/envelope.js";
import { ErrorCode } from "../lib/errors.js";
import { listen } from "../lib/http.js";
import { parseRedisAddress } from "../lib/redis.js";
import { createReplayer } from "../lib/replay.js";
import { streamSource } from "../lib/wire/cloudevent.js";
import { signingKeys, verifySignature } from "../lib/wire/signature.js";
import { createCloudEventDeliverer, type Deliverer } from "./deliver.js";

const SOURCE = streamSource(parseRedisAddress("127.0.0.1:6379"), "mystream");
let sink: RecordingServer;
let deliverer: Deliverer;

before(async () => {
  sink = await startRecordingServer();
  deliverer = createCloudEventDeliverer({
    sink: `${sink.url}events?from=dispatcher`,
    source: SOURCE,
    connections: 4,
    targets: LOOPBACK_TARGETS,
    signingKeys: signingKeys(["test-secret"]),
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
    assert.equal(event.source, "redis://127.0.0.1:6379/mystream");
    assert.equal(event.datacontenttype, "application/json");
    assert.ok(!Number.isNaN(Date.parse(String(event.time))));
    assert.equal(event.asyncrequestid, "req-1");
    assert.equal(event.asyncattempt, "2");
    assert.deepEqual(event.data, entry.fields);
    // Signed over the very bytes sent, with the configured secret, so that the consumer can tell it is ours.
    assert.deepEqual(verifySignature(received.headers, received.body, signingKeys(["test-secret"]), 60_000), {
      ok: true,
    });
    assert.equal(verifySignature(received.headers, received.body, signingKeys(["other"]), 60_000).ok, false);
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
      source: SOURCE,
      connections: 1,
      targets: LOOPBACK_TARGETS,
      signingKeys: [],
    });
    try {
      const outcome = await nowhere.deliver(entry, request, 1, 1000);
      assert.equal(outcome.kind === "error" && outcome.code, ErrorCode.TargetUnreachable);
    } finally {
      await nowhere.close();
    }
  });

  test("a sink that cannot be reached fails as a replay to the same address does", async () => {
    const tls = createTlsServer({ key: SELF_SIGNED_KEY, cert: SELF_SIGNED_CERT }, (_req, res) => res.end());
    const tlsPort = await listen(tls, 0, "127.0.0.1");
    const replayer = createReplayer({ timeoutMs: 5_000, targets: LOOPBACK_TARGETS });
    const kinds = [
      { kind: "nobody listens", url: `http://127.0.0.1:${await freePort()}/` },
      { kind: "unknown host", url: "http://no-such-host.invalid/" },
      // A TLS handshake that fails (the certificate is trusted by no one): nothing was written.
      { kind: "untrusted certificate", url: `https://127.0.0.1:${tlsPort}/` },
    ];
    try {
      for (const { kind, url } of kinds) {
        const toSink = createCloudEventDeliverer({
          sink: url,
          source: SOURCE,
          connections: 1,
          targets: LOOPBACK_TARGETS,
          signingKeys: [],
        });
        try {
          const sinkOutcome = await toSink.deliver(entry, request, 1, 1000);
          const replayOutcome = await replayer.replay({ ...request, url });
          assert.equal(sinkOutcome.kind === "error" && sinkOutcome.code, ErrorCode.TargetUnreachable, kind);
          assert.equal(
            replayOutcome.kind === "error" && replayOutcome.code,
            ErrorCode.TargetUnreachable,
            kind,
          );
        } finally {
          await toSink.close();
        }
      }
    } finally {
      await replayer.close();
      tls.closeAllConnections();
      await new Promise<void>((resolve) => tls.close(() => resolve()));
    }
  });
});

/** A throwaway self-signed certificate for 127.0.0.1 (P-256, valid until 2126), made for this test only. */
const SELF_SIGNED_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDA97vg4Mvc0OtQz6
ZC1bJ1U/Ruf4WEMxseQ9M9PRklmhRANCAASbp9tjSclfEp9xJRH3GS7EE+aKAxF6
4yyi87DHflS3uB/nBB1n7QdWYCzJyKxk2uHEdxUoGmcTLs8EUJLyka3E
-----END PRIVATE KEY-----
`;
const SELF_SIGNED_CERT = `-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUFUClOMI+MmIlaj4YRznaFnDWalAwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMTIxNTAxOVoYDzIxMjYxMTA3
MjE1MDE5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASbp9tjSclfEp9xJRH3GS7EE+aKAxF64yyi87DHflS3uB/nBB1n7QdW
YCzJyKxk2uHEdxUoGmcTLs8EUJLyka3Eo28wbTAdBgNVHQ4EFgQUGx5wLgt2ZAO4
K5Z61B4c9O1kyLQwHwYDVR0jBBgwFoAUGx5wLgt2ZAO4K5Z61B4c9O1kyLQwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDSAAwRQIhAJO7fBsbakZ6vgn8A2HknjwMEdAcjGE767DFlkhsy2SUAiBM
WMVclqfcLJxZpL7IOIfonkCyBocDPpxK/zwKmQiNzQ==
-----END CERTIFICATE-----
`;
