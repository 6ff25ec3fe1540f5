import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { test } from "node:test";
import { signatureHeaders, signingKeys, verifySignature } from "./signature.js";

const headersOf = (list: string[]) => {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < list.length; i += 2) out[list[i] as string] = list[i + 1] as string;
  return out;
};

test("a signature is HMAC-SHA256 over id.timestamp.body, as Standard Webhooks defines it", () => {
  const secret = randomBytes(24);
  const body = Buffer.from('["data","{}"]');
  const headers = headersOf(
    signatureHeaders(signingKeys([`whsec_${secret.toString("base64")}`]), "1-0", body, 1_700_000_000_999),
  );
  assert.equal(headers["webhook-id"], "1-0");
  assert.equal(headers["webhook-timestamp"], "1700000000");
  // Computed independently of the module.
  const expected = createHmac("sha256", secret).update(`1-0.1700000000.${body.toString()}`).digest("base64");
  assert.equal(headers["webhook-signature"], `v1,${expected}`);
});

test("verification: the right secret passes; a changed body, id, old timestamp or other secret fails", () => {
  const keys = signingKeys(["s3cret"]);
  const body = Buffer.from("payload");
  const now = 1_700_000_000_000;
  const signed = headersOf(signatureHeaders(keys, "7-1", body, now));
  const verify = (h: Record<string, string>, b = body, k = keys, at = now) =>
    verifySignature(h, b, k, 300_000, at);
  assert.deepEqual(verify(signed), { ok: true });
  assert.equal(verify(signed, Buffer.from("payloaD")).ok, false);
  assert.equal(verify({ ...signed, "webhook-id": "7-2" }).ok, false);
  assert.equal(verify(signed, body, keys, now + 301_000).ok, false, "too old");
  assert.equal(verify(signed, body, keys, now - 301_000).ok, false, "from the future");
  assert.equal(verify(signed, body, signingKeys(["other"])).ok, false);
  assert.equal(verify({}).ok, false);
  assert.equal(verify({ ...signed, "webhook-timestamp": "soon" }).ok, false);
  assert.equal(verify({ ...signed, "webhook-signature": "v2,abc" }).ok, false);
});

test("rotation: a sender with old and new secrets is accepted by a receiver with either", () => {
  const body = Buffer.from("x");
  const signed = headersOf(signatureHeaders(signingKeys(["old", "new"]), "1-0", body));
  assert.equal(verifySignature(signed, body, signingKeys(["old"]), 60_000).ok, true);
  assert.equal(verifySignature(signed, body, signingKeys(["new"]), 60_000).ok, true);
  const onlyNew = headersOf(signatureHeaders(signingKeys(["new"]), "1-0", body));
  assert.equal(verifySignature(onlyNew, body, signingKeys(["old", "new"]), 60_000).ok, true);
  assert.equal(verifySignature(onlyNew, body, signingKeys(["old"]), 60_000).ok, false);
});
