import assert from "node:assert/strict";
import { test } from "node:test";
import { HTTP } from "cloudevents";
import { isUri, isUriReference } from "../../../test/helpers/uri.js";
import { loadDlqConfig } from "../../dlq/config.js";
import { encodeEnvelope, encodeEnvelopeBuffer } from "../envelope.js";
import { parseRedisAddress } from "../redis.js";
import { encodeDeadLetterEvent, encodeStreamEvent, parseEvent, streamSource } from "./cloudevent.js";

/** undici's flat `[name, value, ...]` list as the object Node's `req.headers` would be. */
function headerObject(flat: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) headers[flat[i] as string] = flat[i + 1] as string;
  return headers;
}

const request = {
  id: "r-1",
  url: "http://hello.default.svc.cluster.local/x?y=1",
  method: "POST",
  headers: { "Content-Type": ["text/plain"] },
  body: Buffer.from("hi"),
};
const envelope = encodeEnvelope(request);
const binary = { "ce-specversion": "1.0", "ce-id": "1-0", "content-type": "application/json" };

test("binary mode: id, attempt and the envelope from the field list", () => {
  const event = parseEvent(
    { ...binary, "ce-asyncattempt": "4" },
    Buffer.from(JSON.stringify(["data", envelope])),
  );
  assert.equal(event.ok, true);
  assert.ok(event.ok);
  assert.equal(event.ceId, "1-0");
  assert.equal(event.attempt, 4);
  assert.equal(event.request.id, "r-1");
  assert.equal(event.request.body.toString(), "hi");
});

test("the data field is found wherever it is in the list", () => {
  const event = parseEvent(binary, Buffer.from(JSON.stringify(["attempts", "2", "data", envelope])));
  assert.ok(event.ok);
  assert.equal(event.request.url, "http://hello.default.svc.cluster.local/x?y=1");
});

test("structured mode: integer or string attempt, and the id is kept when the data is bad", () => {
  const structured = { "content-type": "application/cloudevents+json" };
  const ok = parseEvent(
    structured,
    Buffer.from(JSON.stringify({ specversion: "1.0", id: "2-0", asyncattempt: 2, data: ["data", envelope] })),
  );
  assert.ok(ok.ok);
  assert.equal(ok.attempt, 2);
  const bad = parseEvent(
    structured,
    Buffer.from(JSON.stringify({ specversion: "1.0", id: "3-0", data: 42 })),
  );
  assert.deepEqual(bad, { ok: false, ceId: "3-0", reason: "event has no data" });
});

test("a bad attempt is ignored, not fatal", () => {
  for (const attempt of ["0", "-1", "x", "1e3"]) {
    const event = parseEvent(
      { ...binary, "ce-asyncattempt": attempt },
      Buffer.from(JSON.stringify(["data", envelope])),
    );
    assert.ok(event.ok);
    assert.equal(event.attempt, undefined, attempt);
  }
});

test("what the dispatcher sends, the consumer reads back", () => {
  const entry = { id: "1700000000000-0", fields: ["data", envelope, "attempts", "2"] };
  const event = encodeStreamEvent(entry, streamSource(parseRedisAddress("127.0.0.1:6379"), "s"), "r-1", 3);
  const headers = headerObject(event.headers);
  const parsed = parseEvent(headers, Buffer.from(event.body));
  assert.ok(parsed.ok);
  assert.equal(parsed.ceId, entry.id);
  assert.equal(parsed.attempt, 3);
  assert.equal(parsed.request.id, "r-1");
  assert.equal(headers["ce-asyncrequestid"], "r-1");
});

test("a large entry read as Buffers: the event is JSON.stringify's bytes, and reads back in place", () => {
  const source = streamSource(parseRedisAddress("127.0.0.1:6379"), "s");
  const text = Buffer.from(`"q" \\ \n \u0001 é中🚀 ${"x".repeat(100_000)}`);
  for (const body of [text, Buffer.alloc(100_000, 7), Buffer.from([0xff, 0xfe, 0, 0x80, 0x22])]) {
    const stored = encodeEnvelopeBuffer({ ...request, body });
    const fields = [Buffer.from("other"), Buffer.from('o"x'), Buffer.from("data"), stored];
    const event = encodeStreamEvent({ id: "1-0", fields }, source, "r-1", 1);
    assert.ok(Buffer.isBuffer(event.body) || stored.length < 64 * 1024);
    assert.deepEqual(Buffer.from(event.body), Buffer.from(JSON.stringify(fields.map(String))));
    const parsed = parseEvent(headerObject(event.headers), Buffer.from(event.body));
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.request.body, body);
  }
});

test("a large event that is not a field list of strings is refused as the text path says", () => {
  const pad = "x".repeat(70_000);
  const cases: [string, string][] = [
    [`["data",${JSON.stringify(envelope)},"x",1,"${pad}"]`, "data is not a list of strings"],
    [`["data",${JSON.stringify(envelope)},"${pad}"`, "data is not JSON"],
    [`["other","${pad}"]`, 'the entry has no "data" field'],
  ];
  for (const [data, reason] of cases) {
    assert.deepEqual(parseEvent(binary, Buffer.from(data)), { ok: false, ceId: "1-0", reason });
  }
});

test("the dead-letter event is a valid binary-mode CloudEvent with JSON data", () => {
  const data = { deadLetterId: "9-0", reason: "max-attempts", entry: { data: envelope } };
  const sent = encodeDeadLetterEvent("9-0", streamSource(parseRedisAddress("127.0.0.1:6379"), "s"), data);
  const headers = headerObject(sent.headers);
  const event = HTTP.toEvent({ headers, body: sent.body });
  assert.ok(!Array.isArray(event));
  assert.equal(event.specversion, "1.0");
  assert.equal(event.type, "dev.knative.async.deadletter");
  assert.equal(event.id, "9-0");
  assert.equal(event.source, "redis://127.0.0.1:6379/s");
  assert.equal(event.datacontenttype, "application/json");
  assert.ok(!Number.isNaN(Date.parse(String(event.time))));
  assert.deepEqual(event.data, data);
});

test("the strict URI-reference check refuses what strict receivers refuse", () => {
  for (const good of [
    "redis://127.0.0.1:6379/mystream",
    "rediss://[::1]:6379/my%20stream",
    "redis://[fe80::1:2]:7000/2/s",
    "/mystream",
    "mystream",
    "urn:x:y",
    "//host/s?q#f",
  ]) {
    assert.ok(isUriReference(good), good);
  }
  for (const bad of [
    "127.0.0.1:6379/mystream",
    ":***@host:6379/s",
    "redis://h:1/my stream",
    'redis://h:1/a"b',
    "redis://h:1/a%zzb",
    "redis://[::1/s",
    "redis://h{x}:1/s",
    "redis://h:1/s\u202e",
    "redis://h:1/ü",
  ]) {
    assert.ok(!isUriReference(bad), bad);
  }
});

test("the source is redis://host:port/stream for every form of REDIS_ADDRESS, never with a password", () => {
  const rows: { address: string; tlsCert?: string; stream?: string; source: string }[] = [
    { address: "127.0.0.1:6379", source: "redis://127.0.0.1:6379/mystream" },
    { address: "redis.default.svc", source: "redis://redis.default.svc:6379/mystream" },
    { address: "redis://bob:p@ss@redis.default.svc:6380", source: "redis://redis.default.svc:6380/mystream" },
    { address: "bob:s3cr@t/x@10.0.0.1:6380/2", source: "redis://10.0.0.1:6380/2/mystream" },
    { address: "rediss://:p4ss@cache.example.com", source: "rediss://cache.example.com:6379/mystream" },
    { address: "cache:6380", tlsCert: "-----BEGIN CERTIFICATE-----", source: "rediss://cache:6380/mystream" },
    { address: "[::1]:6379", source: "redis://[::1]:6379/mystream" },
    { address: "redis://[fe80::1]:7000", source: "redis://[fe80::1]:7000/mystream" },
    { address: "redis://h{x}%zz:6379", source: "redis://h%7Bx%7D%25zz:6379/mystream" },
    { address: "127.0.0.1:6379", stream: "my stream", source: "redis://127.0.0.1:6379/my%20stream" },
    {
      address: "127.0.0.1:6379",
      stream: 'a/b?c#d%e"ü\u202e{x}',
      source: "redis://127.0.0.1:6379/a%2Fb%3Fc%23d%25e%22%C3%BC%E2%80%AE%7Bx%7D",
    },
    { address: "127.0.0.1:6379", stream: "s:1@x;y=z", source: "redis://127.0.0.1:6379/s%3A1%40x%3By%3Dz" },
  ];
  for (const row of rows) {
    const { redis } = loadDlqConfig({
      REDIS_ADDRESS: row.address,
      ...(row.stream ? { REDIS_STREAM_NAME: row.stream } : {}),
      ...(row.tlsCert ? { TLS_CERT: row.tlsCert } : {}),
    });
    const source = streamSource(redis, row.stream ?? "mystream");
    assert.equal(source, row.source, row.address);
    assert.ok(isUri(source), source);
    assert.ok(!/p@ss|s3cr|p4ss|bob/.test(source), source);
    for (const sent of [
      encodeStreamEvent({ id: "1-0", fields: ["data", envelope] }, source, "r-1", 1),
      encodeDeadLetterEvent("2-0", source, {}),
    ]) {
      const ceSource = headerObject(sent.headers)["ce-source"] ?? "";
      assert.ok(isUriReference(ceSource), ceSource);
      const event = HTTP.toEvent({ headers: headerObject(sent.headers), body: sent.body });
      assert.ok(!Array.isArray(event));
      assert.equal(event.source, source);
    }
  }
});
