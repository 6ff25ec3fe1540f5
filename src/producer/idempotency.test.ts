import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { startRedisServer, type TestRedisServer } from "../../test/helpers/redis-server.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { streamKeys } from "../lib/keys.js";
import { connectRedis, parseRedisAddress } from "../lib/redis.js";
import {
  type EnqueueArgs,
  IdempotencyScripts,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  parseIdempotencyKey,
  requestFingerprint,
} from "./idempotency.js";

describe("parseIdempotencyKey", () => {
  test("accepts an sf-string, with escapes, and leniently a bare token", () => {
    assert.equal(parseIdempotencyKey(undefined), undefined);
    assert.equal(
      parseIdempotencyKey(['"8e03978e-40d5-43e8-bc93-6894a57f9324"']),
      "8e03978e-40d5-43e8-bc93-6894a57f9324",
    );
    assert.equal(parseIdempotencyKey([' "a \\"b\\" \\\\c" ']), 'a "b" \\c');
    assert.equal(
      parseIdempotencyKey(["8e03978e-40d5-43e8-bc93-6894a57f9324"]),
      "8e03978e-40d5-43e8-bc93-6894a57f9324",
    );
    assert.equal(parseIdempotencyKey(["order:42/retry"]), "order:42/retry");
    assert.equal(parseIdempotencyKey([`"${"k".repeat(MAX_IDEMPOTENCY_KEY_LENGTH)}"`])?.length, 255);
  });

  for (const [name, values] of [
    ["empty header", [""]],
    ["empty string", ['""']],
    ["too long", [`"${"k".repeat(MAX_IDEMPOTENCY_KEY_LENGTH + 1)}"`]],
    ["unterminated", ['"abc']],
    ["text after the string", ['"abc"x']],
    ["bad escape", ['"a\\nb"']],
    ["non-ASCII", ['"ключ"']],
    ["bare value with a space", ["a b"]],
    ["two headers", ['"a"', '"b"']],
  ] as const) {
    test(`refuses ${name}`, () => {
      assert.throws(
        () => parseIdempotencyKey(values),
        (err: unknown) => err instanceof AsyncError && err.code === ErrorCode.BadIdempotencyKey,
      );
    });
  }
});

test("the fingerprint changes with method, URL and body and with nothing else", () => {
  const base = requestFingerprint("POST", "http://a.b.svc/x", Buffer.from("body"));
  assert.match(base, /^[0-9a-f]{64}$/);
  assert.equal(requestFingerprint("POST", "http://a.b.svc/x", Buffer.from("body")), base);
  assert.notEqual(requestFingerprint("PUT", "http://a.b.svc/x", Buffer.from("body")), base);
  assert.notEqual(requestFingerprint("POST", "http://a.b.svc/y", Buffer.from("body")), base);
  assert.notEqual(requestFingerprint("POST", "http://a.b.svc/x", Buffer.from("bodY")), base);
});

describe("enqueue-idempotent-2.lua against Redis", () => {
  let server: TestRedisServer;
  let redis: Redis;
  let scripts: IdempotencyScripts;
  const keys = streamKeys(`idem-${randomUUID()}`);

  before(async () => {
    server = await startRedisServer();
    redis = connectRedis(parseRedisAddress(server.address), { name: "idempotency-test" });
    scripts = new IdempotencyScripts(redis);
  });
  after(async () => {
    redis?.disconnect();
    await server?.cleanup();
  });

  const args = (key: string, overrides: Partial<EnqueueArgs> = {}): EnqueueArgs => ({
    streamKey: keys.stream,
    recordKey: keys.idempotency(key),
    fingerprint: "fp-1",
    id: randomUUID(),
    envelope: '{"id":"x"}',
    ttlMs: 60_000,
    acceptingMs: 0,
    ...overrides,
  });
  const entries = async () => (await redis.xrange(keys.stream, "-", "+")).length;

  test("a new key enqueues once; the same request again replays the first id; another request mismatches", async () => {
    const before = await entries();
    const first = await scripts.enqueue(args("k1"));
    assert.equal(first.outcome, "new");
    const again = await scripts.enqueue(args("k1"));
    assert.deepEqual(again, { outcome: "replay", id: first.id });
    assert.deepEqual(await scripts.enqueue(args("k1", { fingerprint: "fp-2" })), {
      outcome: "mismatch",
      id: "",
    });
    assert.equal(await entries(), before + 1);

    const record = await redis.hgetall(keys.idempotency("k1"));
    assert.equal(record.state, "accepted");
    assert.equal(record.id, first.id);
    assert.equal(record.fingerprint, "fp-1");
    const pttl = await redis.pttl(keys.idempotency("k1"));
    assert.ok(pttl > 55_000 && pttl <= 60_000, `PTTL ${pttl}`);
  });

  test("a record still being accepted answers in-progress and enqueues nothing", async () => {
    const recordKey = keys.idempotency("k2");
    await redis.hset(recordKey, {
      state: "accepting",
      id: "first",
      fingerprint: "fp-1",
      until: Date.now() + 60_000,
    });
    const before = await entries();
    assert.deepEqual(await scripts.enqueue(args("k2", { acceptingMs: 1000 })), {
      outcome: "in-progress",
      id: "first",
    });
    assert.equal(await entries(), before);
  });

  test("an accepting record whose window ended is confirmed again, or simply accepted when no WAIT is used", async () => {
    const recordKey = keys.idempotency("k3");
    await redis.hset(recordKey, {
      state: "accepting",
      id: "first",
      fingerprint: "fp-1",
      until: Date.now() - 1,
    });
    const before = await entries();
    assert.deepEqual(await scripts.enqueue(args("k3", { acceptingMs: 5000 })), {
      outcome: "confirm",
      id: "first",
    });
    assert.ok(Number(await redis.hget(recordKey, "until")) > Date.now() + 3000);
    // The confirmation is itself in progress now.
    assert.equal((await scripts.enqueue(args("k3", { acceptingMs: 5000 }))).outcome, "in-progress");

    assert.equal(await scripts.settle(recordKey, "someone-else", "accepted"), false);
    assert.equal(await redis.hget(recordKey, "state"), "accepting");
    assert.equal(await scripts.settle(recordKey, "first", "unconfirmed"), true);
    assert.equal(await redis.hget(recordKey, "until"), "0");
    assert.equal((await scripts.enqueue(args("k3", { acceptingMs: 5000 }))).outcome, "confirm");
    assert.equal(await scripts.settle(recordKey, "first", "accepted"), true);
    assert.deepEqual(await scripts.enqueue(args("k3", { acceptingMs: 5000 })), {
      outcome: "replay",
      id: "first",
    });

    await redis.hset(keys.idempotency("k4"), { state: "accepting", id: "f4", fingerprint: "fp-1", until: 0 });
    assert.deepEqual(await scripts.enqueue(args("k4")), { outcome: "replay", id: "f4" });
    assert.equal(await redis.hget(keys.idempotency("k4"), "state"), "accepted");
    assert.equal(await entries(), before);
  });

  test("a new key with a replica wait starts in the accepting state", async () => {
    const result = await scripts.enqueue(args("k5", { acceptingMs: 2000 }));
    assert.equal(result.outcome, "new");
    const record = await redis.hgetall(keys.idempotency("k5"));
    assert.equal(record.state, "accepting");
    assert.ok(Number(record.until) > Date.now());
    assert.match(record.entry ?? "", /^\d+-\d+$/);
  });
});
