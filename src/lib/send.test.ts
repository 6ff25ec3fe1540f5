import assert from "node:assert/strict";
import { test } from "node:test";
import { errors } from "undici";
import { ErrorCode } from "./errors.js";
import { classifySendError } from "./send.js";

function failure(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

function codeOf(err: unknown, peer = "sink"): ErrorCode | undefined {
  const outcome = classifySendError(err, peer, performance.now());
  return outcome.kind === "error" ? outcome.code : undefined;
}

// Real sockets cover refused ports, unknown hosts and untrusted certificates (replay.test.ts,
// deliver.test.ts); this table covers the codes no test can provoke on demand, such as EADDRNOTAVAIL.
test("every failure before the request is written is TargetUnreachable, for the sink and a replay alike", () => {
  for (const code of [
    "ECONNREFUSED",
    "ENOTFOUND",
    "EAI_AGAIN",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "EADDRNOTAVAIL",
    "UND_ERR_CONNECT_TIMEOUT",
    "ERR_TLS_CERT_ALTNAME_INVALID",
    "DEPTH_ZERO_SELF_SIGNED_CERT",
    "SELF_SIGNED_CERT_IN_CHAIN",
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "CERT_HAS_EXPIRED",
    "UND_ERR_CLOSED",
    "UND_ERR_DESTROYED",
  ]) {
    assert.equal(codeOf(failure(code), "sink"), ErrorCode.TargetUnreachable, code);
    assert.equal(codeOf(failure(code), "http://app.example"), ErrorCode.TargetUnreachable, code);
  }
  assert.equal(codeOf(new errors.ConnectTimeoutError()), ErrorCode.TargetUnreachable);
});

test("a connect failure per address counts only when every address failed to connect", () => {
  const both = new AggregateError([failure("ECONNREFUSED"), failure("EADDRNOTAVAIL")], "connect failed");
  assert.equal(codeOf(both), ErrorCode.TargetUnreachable);
  const wrapped = Object.assign(new Error("fetch failed"), { cause: failure("ECONNREFUSED") });
  assert.equal(codeOf(wrapped), ErrorCode.TargetUnreachable);
  const mixed = new AggregateError([failure("ECONNREFUSED"), failure("ECONNRESET")], "failed");
  assert.equal(codeOf(mixed), ErrorCode.TargetFailed);
});

test("timeouts, broken connections, refused requests, and errors without a code", () => {
  assert.equal(codeOf(new errors.HeadersTimeoutError()), ErrorCode.TargetTimeout);
  assert.equal(codeOf(new errors.BodyTimeoutError()), ErrorCode.TargetTimeout);
  assert.equal(codeOf(failure("ECONNRESET")), ErrorCode.TargetFailed);
  assert.equal(codeOf(failure("UND_ERR_SOCKET")), ErrorCode.TargetFailed);
  assert.equal(codeOf(new errors.InvalidArgumentError("invalid header")), ErrorCode.MalformedEvent);
  assert.equal(codeOf(new Error("no code")), ErrorCode.TargetFailed);
  assert.equal(codeOf("not even an Error"), ErrorCode.TargetFailed);
});

test("the message names the peer and the code", () => {
  const outcome = classifySendError(
    failure("ECONNREFUSED", "connect ECONNREFUSED"),
    "sink",
    performance.now(),
  );
  assert.equal(outcome.kind === "error" && outcome.message, "sink: ECONNREFUSED connect ECONNREFUSED");
});
