import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startTestIssuer, type TestIssuer } from "../../test/helpers/oidc.js";
import { OidcVerifier, TokenFile } from "./oidc.js";

let issuer: TestIssuer;
before(async () => {
  issuer = await startTestIssuer();
});
after(() => issuer.close());

describe("OidcVerifier, against a real JWKS endpoint found by discovery", () => {
  const subject = "system:serviceaccount:knative-serving:async-dispatcher";
  const verifier = () =>
    new OidcVerifier({ issuer: issuer.issuer, audience: "async-consumer", subjects: [subject] });
  const good = () => ({
    iss: issuer.issuer,
    aud: ["async-consumer"],
    sub: subject,
    exp: Math.floor(Date.now() / 1000) + 600,
    nbf: Math.floor(Date.now() / 1000) - 5,
  });

  test("a token of the issuer, for our audience, to an accepted subject, passes (RS256 and ES256)", async () => {
    const v = verifier();
    assert.deepEqual(await v.verify(`Bearer ${issuer.token(good())}`), { ok: true, subject });
    assert.deepEqual(await v.verify(`Bearer ${issuer.token(good(), { alg: "ES256" })}`), {
      ok: true,
      subject,
    });
  });

  test("everything else is refused, with a reason", async () => {
    const v = verifier();
    const now = Math.floor(Date.now() / 1000);
    const stranger = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    const valid = issuer.token(good());
    const forgedClaims = Buffer.from(JSON.stringify({ ...good(), sub: "x" })).toString("base64url");
    const cases: [string, string | undefined][] = [
      ["no header", undefined],
      ["not bearer", `Basic ${Buffer.from("a:b").toString("base64")}`],
      ["another issuer", `Bearer ${issuer.token({ ...good(), iss: "https://evil" })}`],
      ["another audience", `Bearer ${issuer.token({ ...good(), aud: "someone-else" })}`],
      [
        "another subject",
        `Bearer ${issuer.token({ ...good(), sub: "system:serviceaccount:default:intruder" })}`,
      ],
      ["expired", `Bearer ${issuer.token({ ...good(), exp: now - 3600 })}`],
      ["not yet valid", `Bearer ${issuer.token({ ...good(), nbf: now + 3600 })}`],
      ["signed by a stranger", `Bearer ${issuer.token(good(), { key: stranger })}`],
      ["unknown key id", `Bearer ${issuer.token(good(), { kid: "nope" })}`],
      ["alg none", `Bearer ${valid.replace(/^[^.]+/, Buffer.from('{"alg":"none"}').toString("base64url"))}`],
      ["tampered claims", `Bearer ${valid.replace(/\.[^.]+\./, `.${forgedClaims}.`)}`],
    ];
    for (const [name, header] of cases) {
      const verdict = await v.verify(header);
      assert.equal(verdict.ok, false, name);
    }
  });

  test("keys are fetched once, not per token", async () => {
    const v = verifier();
    const before = issuer.jwksHits();
    for (let i = 0; i < 20; i++) assert.equal((await v.verify(`Bearer ${issuer.token(good())}`)).ok, true);
    assert.equal(issuer.jwksHits() - before, 1);
  });
});

test("TokenFile reads the projected token, and again when the kubelet rewrites it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "oidc-"));
  const path = join(dir, "token");
  writeFileSync(path, "first-token\n");
  const file = new TokenFile(path);
  assert.equal(await file.token(), "first-token");
  await new Promise((resolve) => setTimeout(resolve, 1100));
  writeFileSync(path, "second-token");
  assert.equal(await file.token(), "second-token");
});
