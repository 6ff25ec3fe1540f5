/**
 * The producer's durable write: what makes a 202 true.
 *
 * Contract: `accept` resolves only once Redis acknowledged the write (and, with REDIS_WAIT_REPLICAS, that
 * many replicas confirmed it); otherwise it throws the error to answer with, never a 202. A write that
 * timed out or was not confirmed by replicas may still be delivered, which is why those errors point the
 * client at an Idempotency-Key, and why a request that carries one goes through the idempotency script
 * (idempotency.ts) rather than a plain XADD.
 */
import { Command, type Redis } from "ioredis";
import { DATA_FIELD } from "../lib/entry.js";
import type { AsyncRequest } from "../lib/envelope.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import type { StreamKeys } from "../lib/keys.js";
import type { CodeWarning } from "../lib/logger.js";
import { REQUEST_ID, RETRY_AFTER } from "../lib/wire/headers.js";
import type { ProducerConfig } from "./config.js";
import { IdempotencyScripts, requestFingerprint } from "./idempotency.js";

/** What the 202 says about a stored request. */
export interface Answer {
  readonly id: string;
  /** True when nothing new was stored: the 202 repeats an earlier one for the same Idempotency-Key. */
  readonly replayed: boolean;
  /** True when this answer is the first 202 for the id. */
  readonly firstAccept: boolean;
}

export type StoreConfig = Pick<
  ProducerConfig,
  "redisTimeoutMs" | "waitReplicas" | "waitTimeoutMs" | "idempotencyTtlMs"
>;

/**
 * How long one write may take before it is refused. With replicas to wait for, a write may queue behind
 * another request's WAIT on the shared connection (WAIT blocks it), so its deadline includes the WAIT
 * timeout.
 */
export function writeTimeoutMs(config: StoreConfig): number {
  return config.redisTimeoutMs + (config.waitReplicas > 0 ? config.waitTimeoutMs : 0);
}

/** The errors' Retry-After, built once: every refusal here is worth retrying a second later. */
const RETRY_SOON: Readonly<Record<string, string>> = Object.freeze({ [RETRY_AFTER]: "1" });

/**
 * Stores async requests in the stream. The connection is expected to fail fast while Redis is away and
 * to time commands out after `writeTimeoutMs(config)` (see connectRedis), so that a client learns within
 * that time whether its request was accepted.
 */
export class RequestStore {
  readonly #redis: Redis;
  readonly #keys: StreamKeys;
  readonly #config: StoreConfig;
  readonly #scripts: IdempotencyScripts;
  readonly #warn: CodeWarning;
  readonly #writeTimeoutMs: number;

  constructor(redis: Redis, keys: StreamKeys, config: StoreConfig, warn: CodeWarning) {
    this.#redis = redis;
    this.#keys = keys;
    this.#config = config;
    this.#scripts = new IdempotencyScripts(redis);
    this.#warn = warn;
    this.#writeTimeoutMs = writeTimeoutMs(config);
  }

  /**
   * Stores the request, encoded as `envelope`, and resolves with what the 202 says; throws the error
   * answer otherwise. With `key` (an Idempotency-Key), a request already stored under it is not stored
   * again: the answer repeats its id.
   */
  async accept(request: AsyncRequest, envelope: string | Buffer, key: string | undefined): Promise<Answer> {
    try {
      if (key === undefined) {
        await this.#append(envelope);
        if (this.#config.waitReplicas > 0) await this.#confirmReplicas(request.id, false);
        return { id: request.id, replayed: false, firstAccept: true };
      }
      return await this.#acceptOnce(request, envelope, key);
    } catch (err) {
      throw notStored(err, this.#writeTimeoutMs);
    }
  }

  /** The plain append; not async, so that the hot path awaits ioredis's promise and no other. */
  #append(envelope: string | Buffer): Promise<unknown> {
    const stream = this.#keys.stream;
    if (typeof envelope === "string") return this.#redis.xadd(stream, "*", DATA_FIELD, envelope);
    // Sent on its own rather than auto-pipelined: a pipeline copies its commands into one more Buffer,
    // which for large bodies is the largest allocation of the request.
    const xadd = new Command("xadd", [stream, "*", DATA_FIELD, envelope]);
    this.#redis.sendCommand(xadd);
    return xadd.promise;
  }

  /** The idempotent enqueue: decide and append in one script, then confirm with replicas and settle. */
  async #acceptOnce(request: AsyncRequest, envelope: string | Buffer, key: string): Promise<Answer> {
    const { waitReplicas, waitTimeoutMs } = this.#config;
    const recordKey = this.#keys.idempotency(key);
    const { outcome, id } = await this.#scripts.enqueue({
      streamKey: this.#keys.stream,
      recordKey,
      fingerprint: requestFingerprint(request.method, request.url, request.body),
      id: request.id,
      envelope,
      ttlMs: this.#config.idempotencyTtlMs,
      // Covers the WAIT and the write queued before it; past this, a retry may confirm again.
      acceptingMs: waitReplicas > 0 ? waitTimeoutMs + this.#writeTimeoutMs : 0,
    });
    switch (outcome) {
      case "replay":
        return { id, replayed: true, firstAccept: false };
      case "mismatch":
        throw new AsyncError(
          ErrorCode.IdempotencyMismatch,
          "this Idempotency-Key was already used for a different request (method, URL or body differ)",
        );
      case "in-progress":
        throw new AsyncError(
          ErrorCode.IdempotencyInProgress,
          "a request with this Idempotency-Key is still being accepted; retry shortly",
          { headers: RETRY_SOON },
        );
      case "new":
      case "confirm":
        break;
    }
    if (waitReplicas > 0) {
      try {
        await this.#confirmReplicas(id, true);
      } catch (err) {
        await this.#scripts.settle(recordKey, id, "unconfirmed").catch(() => undefined);
        throw err;
      }
      // If this fails the record stays "accepting" until its window ends; a retry then confirms again.
      await this.#scripts
        .settle(recordKey, id, "accepted")
        .catch((err: unknown) =>
          this.#warn(
            ErrorCode.StoreUnavailable,
            "could not mark an idempotency record accepted",
            notStored(err, this.#writeTimeoutMs),
          ),
        );
    }
    return { id, replayed: outcome === "confirm", firstAccept: true };
  }

  /**
   * With REDIS_WAIT_REPLICAS, waits until that many replicas have the connection's writes so far. The
   * connection is shared and auto-pipelined, so one WAIT covers every write sent before it and the
   * WAITs of concurrent requests mostly return at once.
   */
  async #confirmReplicas(id: string, hasKey: boolean): Promise<void> {
    const { waitReplicas, waitTimeoutMs } = this.#config;
    let confirmed = 0;
    let cause: unknown;
    try {
      // WAIT blocks for up to its own timeout on the server, so it gets that on top of the usual one.
      // It goes out after this request's write was answered, so it covers that write.
      const wait = new Command("wait", [waitReplicas, waitTimeoutMs]);
      wait.setTimeout(waitTimeoutMs + this.#writeTimeoutMs);
      confirmed = Number(await this.#redis.sendCommand(wait));
    } catch (err) {
      cause = err;
    }
    if (confirmed >= waitReplicas) return;
    throw new AsyncError(
      ErrorCode.NotReplicated,
      `the request ${id} was stored on the Redis primary only (${confirmed} of ${waitReplicas} replicas confirmed it in time) and may still be delivered; ${hasKey ? "retry with the same Idempotency-Key" : "a retry may deliver it twice (an Idempotency-Key makes retries safe)"}`,
      { cause, headers: { [RETRY_AFTER]: "1", [REQUEST_ID]: id } },
    );
  }
}

/** ioredis's message for a command that reached its `commandTimeout` (or its own timeout). */
const COMMAND_TIMED_OUT = "Command timed out";

/**
 * The answer for a failed Redis write. A command that timed out may still be applied later, so that
 * answer says "not acknowledged" rather than "not stored".
 */
function notStored(err: unknown, timeoutMs: number): AsyncError {
  if (err instanceof AsyncError) return err;
  const message =
    err instanceof Error && err.message === COMMAND_TIMED_OUT
      ? `Redis did not acknowledge the request within ${timeoutMs}ms; retry later (with an Idempotency-Key a retry cannot enqueue it twice)`
      : "the request was not stored: Redis is unavailable; retry later";
  return new AsyncError(ErrorCode.StoreUnavailable, message, { cause: err, headers: RETRY_SOON });
}
