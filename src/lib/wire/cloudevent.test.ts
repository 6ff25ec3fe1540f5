import assert from "node:assert/strict";
import { test } from "node:test";
import { HTTP } from "cloudevents";
import { encodeEnvelope } from "../envelope.js";
import { encodeDeadLetterEvent, encodeStreamEvent, parseEvent } from "./cloudevent.js";

/** undici's flat `[name, value, ...]` list as the object Node's `req.headers` would be. */
function headerObject(flat: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) headers[flat[i] as string] = flat[i + 1] as string;
  return headers;
}

const envelope = encodeEnvelope({
  id: "r-1",
  url: "http://hello.default.svc.cluster.local/x?y=1",
  method: "POST",
  headers: { "Content-Type": ["text/plain"] },
  body: Buffer.from("hi"),
});
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
  const event = encodeStreamEvent(entry, "127.0.0.1:6379/mystream", "r-1", 3);
  const headers = headerObject(event.headers);
  const parsed = parseEvent(headers, Buffer.from(event.body));
  assert.ok(parsed.ok);
  assert.equal(parsed.ceId, entry.id);
  assert.equal(parsed.attempt, 3);
  assert.equal(parsed.request.id, "r-1");
  assert.equal(headers["ce-asyncrequestid"], "r-1");
});

test("the dead-letter event is a valid binary-mode CloudEvent with JSON data", () => {
  const data = { deadLetterId: "9-0", reason: "max-attempts", entry: { data: envelope } };
  const sent = encodeDeadLetterEvent("9-0", "127.0.0.1:6379/mystream", data);
  const headers = headerObject(sent.headers);
  const event = HTTP.toEvent({ headers, body: sent.body });
  assert.ok(!Array.isArray(event));
  assert.equal(event.specversion, "1.0");
  assert.equal(event.type, "dev.knative.async.deadletter");
  assert.equal(event.id, "9-0");
  assert.equal(event.source, "127.0.0.1:6379/mystream");
  assert.equal(event.datacontenttype, "application/json");
  assert.ok(!Number.isNaN(Date.parse(String(event.time))));
  assert.deepEqual(event.data, data);
});
