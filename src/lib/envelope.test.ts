import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { canonicalHeaderName, decodeEnvelope, encodeEnvelope, encodeEnvelopeBuffer } from "./envelope.js";
import { AsyncError, ErrorCode } from "./errors.js";

const base = {
  id: "0b6f6a1e-7c1a-4c55-9a3c-1b1f6f0e2a10",
  url: "http://app.default.svc.cluster.local/path?q=1",
  method: "POST",
  headers: { "Content-Type": ["text/plain"], "X-Multi": ["a", "b"] },
};

test("a UTF-8 body stays a plain string, as the original wrote it", () => {
  const text = encodeEnvelope({ ...base, body: Buffer.from("héllo wörld ✓") });
  const json = JSON.parse(text);
  assert.equal(json.body, "héllo wörld ✓");
  assert.equal(json.bodyEncoding, undefined);
  assert.deepEqual(json.header, base.headers);
  assert.deepEqual(decodeEnvelope(text).body, Buffer.from("héllo wörld ✓"));
});

test("a binary body round-trips byte for byte through base64", () => {
  for (let i = 0; i < 20; i++) {
    const body = randomBytes(1 + i * 97);
    const text = encodeEnvelope({ ...base, body });
    const decoded = decodeEnvelope(text);
    assert.deepEqual(decoded.body, body);
    if (JSON.parse(text).bodyEncoding !== undefined) assert.equal(JSON.parse(text).bodyEncoding, "base64");
  }
  const invalid = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
  assert.equal(JSON.parse(encodeEnvelope({ ...base, body: invalid })).bodyEncoding, "base64");
});

test("the original producer's exact entry decodes", () => {
  // As written by the Go producer: canonical header names, Async-Original-Host included, no extras.
  const original =
    '{"id":"1eb6f4d2-8c4b-6d5e-9b1a-0242ac120002","url":"http://helloworld-sleep.default.svc.cluster.local/",' +
    '"body":"{\\"a\\":1}","header":{"Accept":["*/*"],"Async-Original-Host":["helloworld-sleep.default.svc.cluster.local"],' +
    '"Prefer":["respond-async"],"User-Agent":["curl/7.64.1"]},"method":"POST"}';
  const decoded = decodeEnvelope(original);
  assert.equal(decoded.method, "POST");
  assert.equal(decoded.url, "http://helloworld-sleep.default.svc.cluster.local/");
  assert.equal(decoded.body.toString(), '{"a":1}');
  assert.deepEqual(decoded.headers.Prefer, ["respond-async"]);
});

test("bad envelopes are rejected with MalformedEvent and a reason", () => {
  const cases = [
    "not json",
    "[]",
    '{"url":"http://a/"}',
    '{"id":"x"}',
    '{"id":"x","url":"/relative"}',
    '{"id":"x","url":"ftp://a/"}',
    '{"id":"x","url":"http://a/","method":"GE T"}',
    '{"id":"x","url":"http://a/","header":{"A":[1]}}',
    '{"id":"x","url":"http://a/","body":42}',
    '{"id":"x","url":"http://a/","bodyEncoding":"gzip"}',
  ];
  for (const text of cases) {
    assert.throws(
      () => decodeEnvelope(text),
      (err: unknown) => err instanceof AsyncError && err.code === ErrorCode.MalformedEvent,
      text,
    );
  }
});

test("header names are canonicalised like Go's http.Header", () => {
  assert.equal(canonicalHeaderName("content-type"), "Content-Type");
  assert.equal(canonicalHeaderName("x-request-ID"), "X-Request-Id");
  assert.equal(canonicalHeaderName("prefer"), "Prefer");
  assert.equal(canonicalHeaderName("bad header"), "bad header");
});

test("encodeEnvelopeBuffer writes the very bytes of encodeEnvelope, for every kind of body", () => {
  const bodies = [
    Buffer.alloc(0),
    Buffer.from('{"pad":"xxxx","n":1}'),
    // Everything JSON must escape in a string: quotes, backslashes, each control character.
    Buffer.from(`"\\/${Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join("")}\u007f~`),
    Buffer.from("héllo wörld ✓ 🚀 \u2028\u2029"),
    Buffer.from([0xff, 0xfe, 0x00, 0x80]),
    randomBytes(4097),
    Buffer.from(JSON.stringify({ items: Array.from({ length: 3000 }, (_, i) => ({ i, s: `line ${i}\n` })) })),
  ];
  const headers = {
    "Content-Type": ["application/json"],
    "X-Quoted": ['a "b" \\ c'],
    "X-Latin1": ["caf\u00e9"],
    "X-Multi": ["a", "b"],
  };
  const variants = [
    { ...base, headers },
    { ...base, headers, acceptedAt: 1_700_000_000_123 },
    { ...base, headers, acceptedAt: 1, policy: { maxAttempts: 3, timeoutMs: 2500 } },
    { ...base, headers, policy: {} },
  ];
  for (const body of bodies) {
    for (const variant of variants) {
      const request = { ...variant, body };
      const expected = Buffer.from(encodeEnvelope(request), "utf8");
      const actual = encodeEnvelopeBuffer(request);
      assert.ok(actual.equals(expected), `differs for a ${body.length}-byte body`);
      assert.deepEqual(decodeEnvelope(actual.toString()).body, body);
    }
  }
});

/** A large envelope's fields, whichever way it was decoded. */
function fieldsOf(request: ReturnType<typeof decodeEnvelope>) {
  const { id, url, method, headers, acceptedAt, policy } = request;
  return { id, url, method, headers, acceptedAt, policy, body: request.body };
}

test("a large envelope read as a Buffer decodes in place to what JSON.parse gives", () => {
  const large = 70 * 1024;
  const bodies = [
    Buffer.alloc(large, "x"),
    Buffer.from(`"quoted" \\ \n ${"é中🚀".repeat(large / 8)}`),
    randomBytes(large),
    Buffer.from(JSON.stringify({ items: Array.from({ length: 4000 }, (_, i) => ({ i, s: `line ${i}\n` })) })),
  ];
  for (const body of bodies) {
    const request = { ...base, body, acceptedAt: 5, policy: { maxAttempts: 2 } };
    const data = encodeEnvelopeBuffer(request);
    assert.ok(data.length >= 64 * 1024);
    assert.deepEqual(fieldsOf(decodeEnvelope(data)), fieldsOf(decodeEnvelope(data.toString())));
    assert.deepEqual(decodeEnvelope(data).body, body);
  }
  // Other writers' forms: base64 with line breaks, escaped slashes, the body member twice or escaped.
  const mime = randomBytes(large);
  const wrapped = mime.toString("base64").replace(/(.{76})/g, "$1\r\n");
  const forms = [
    `{"id":"m","url":"http://a/","bodyEncoding":"base64","body":${JSON.stringify(wrapped)}}`,
    `{"id":"s","url":"http://a/","body":"${"a\\/b".repeat(large / 4)}"}`,
    `{"id":"d","url":"http://a/","body":"${"x".repeat(large)}","body":"second"}`,
    `{"id":"e","url":"http://a/","b\\u006fdy":"${"y".repeat(large)}"}`,
    `{"id":"n","url":"http://a/","body":null,"pad":"${"z".repeat(large)}"}`,
  ];
  for (const text of forms) {
    assert.deepEqual(decodeEnvelope(Buffer.from(text)).body, decodeEnvelope(text).body, text.slice(0, 60));
  }
  assert.deepEqual(decodeEnvelope(Buffer.from(forms[0] as string)).body, mime);
});

test("a large envelope's plain body is a view of the entry's own bytes, decoded only when read", () => {
  const data = encodeEnvelopeBuffer({ ...base, body: Buffer.alloc(100_000, "p") });
  const request = decodeEnvelope(data);
  assert.equal(request.body.buffer, data.buffer);
  assert.equal(request.body, request.body, "decoded once");
  assert.deepEqual({ ...request }.body, request.body, "a copy of the request keeps the body");
});

test("a large envelope that is broken anywhere is refused like a small one", () => {
  const pad = "x".repeat(70 * 1024);
  const cases = [
    `{"id":"x","url":"http://a/","body":"${pad}"`,
    `{"id":"x","url":"http://a/","body":"${pad}\\q"}`,
    `{"id":"x","url":"http://a/","body":"${pad}\u0001"}`,
    `{"id":"x","url":"http://a/","body":"${pad}","header":[1]}`,
    `{"id":"x","url":"http://a/","body":"${pad}",}`,
    `{"id":"x","url":"/relative","body":"${pad}"}`,
    `{"id":"x","url":"http://a/","body":"${pad}","bodyEncoding":"gzip"}`,
  ];
  for (const text of cases) {
    assert.throws(
      () => decodeEnvelope(Buffer.from(text)),
      (err: unknown) => err instanceof AsyncError && err.code === ErrorCode.MalformedEvent,
      text.slice(-40),
    );
  }
});
