import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeEnvelope } from "../lib/envelope.js";
import { parseEvent } from "./event.js";

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
